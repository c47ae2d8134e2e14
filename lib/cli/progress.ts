// How the CLI shows ProgressEvents: a bar per stage on a terminal, one plain line per event
// otherwise (logs, CI), or one JSON object per line on stdout for scripts (--json).
import cliProgress from 'cli-progress';

import type { ProgressEvent, Stage } from '../types.js';

export type ProgressMode = 'tty' | 'plain' | 'json';

export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return '?';
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(Math.floor(s % 60)).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}

const STAGE_LABEL: Record<Stage, string> = {
  load: 'load',
  'encode-image': 'image',
  'encode-text': 'text',
  denoise: 'denoise',
  decode: 'decode',
  done: 'done',
  warning: 'warning',
};

/** A stage's label; a stage this version does not know (a newer addon's) shows as its name. */
function stageLabel(stage: Stage): string {
  return STAGE_LABEL[stage] ?? String(stage);
}

/** One JSON line on stdout (the --json protocol: every line is one object with an `event` field). */
export function printJsonLine(event: string, fields: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify({ event, ...fields })}\n`);
}

export class ProgressReporter {
  private readonly mode: ProgressMode;
  private multibar?: cliProgress.MultiBar;
  private bar?: cliProgress.SingleBar;
  private barStage?: Stage;

  constructor(mode: ProgressMode) {
    this.mode = mode;
  }

  /** Something to tell the user that is not a progress step (on stderr; a JSON line with --json). */
  note(message: string): void {
    if (this.mode === 'json') printJsonLine('note', { message });
    else if (this.multibar) this.multibar.log(`${message}\n`);
    else process.stderr.write(`${message}\n`);
  }

  event(e: ProgressEvent): void {
    if (this.mode === 'json') {
      printJsonLine('progress', { ...e });
      return;
    }
    if (e.stage === 'warning') {
      this.note(`warning: ${e.message ?? ''}`);
      return;
    }
    if (e.stage === 'done') {
      this.stop();
      return;
    }
    const detail = [
      e.expert ?? '',
      `elapsed ${formatDuration(e.elapsedMs)}`,
      e.etaMs !== undefined ? `ETA ${formatDuration(e.etaMs)}` : '',
    ]
      .filter(Boolean)
      .join(' | ');
    if (this.mode === 'plain') {
      process.stderr.write(`[${stageLabel(e.stage)}] ${e.step}/${e.totalSteps} ${detail}\n`);
      return;
    }
    this.updateBar(e, detail);
  }

  private updateBar(e: ProgressEvent, detail: string): void {
    if (!this.multibar) {
      this.multibar = new cliProgress.MultiBar(
        {
          stream: process.stderr,
          format: '{stage} [{bar}] {value}/{total} | {detail}',
          barsize: 30,
          hideCursor: true,
          clearOnComplete: false,
          autopadding: true,
        },
        cliProgress.Presets.shades_classic,
      );
    }
    const total = Math.max(1, e.totalSteps);
    const payload = { stage: stageLabel(e.stage).padEnd(7), detail };
    if (this.barStage !== e.stage || !this.bar) {
      this.bar?.update(this.bar.getTotal());
      this.bar = this.multibar.create(total, e.step, payload);
      this.barStage = e.stage;
    } else {
      this.bar.setTotal(total);
      this.bar.update(e.step, payload);
    }
  }

  stop(): void {
    this.multibar?.stop();
    this.multibar = undefined;
    this.bar = undefined;
    this.barStage = undefined;
  }
}
