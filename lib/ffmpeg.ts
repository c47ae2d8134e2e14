// The one place wan-video talks to FFmpeg: it spawns the `ffmpeg` binary and streams raw frames
// through its stdin. Set WAN_VIDEO_FFMPEG to use a specific binary instead of the one on PATH.
import { spawn } from 'node:child_process';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

import { WanError } from './errors.js';

const INSTALL_HINT =
  'Install FFmpeg (Debian/Ubuntu: `sudo apt-get install ffmpeg`; macOS: `brew install ffmpeg`; ' +
  'Windows: `winget install ffmpeg`) or set WAN_VIDEO_FFMPEG to the ffmpeg binary. ' +
  'PNG sequences (`dir/frame-%04d.png`) are written without FFmpeg.';

/** The ffmpeg command to run, looked up at call time so PATH changes apply. */
export function ffmpegCommand(): string {
  return process.env.WAN_VIDEO_FFMPEG || 'ffmpeg';
}

function noFfmpeg(cause: unknown): WanError {
  return new WanError('ERR_WAN_NO_FFMPEG', `wan-video: cannot run '${ffmpegCommand()}' (FFmpeg not found). ${INSTALL_HINT}`, { cause });
}

export function abortedError(what: string): WanError {
  return new WanError('ERR_WAN_ABORTED', `wan-video: ${what} was aborted`);
}

// Keep only the end of stderr: FFmpeg's last lines say why it failed.
const STDERR_TAIL_BYTES = 4096;

/** The first line of `ffmpeg -version`, e.g. 'ffmpeg version 5.1.6 ...'. Throws ERR_WAN_NO_FFMPEG when missing. */
export function ffmpegVersion(): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '';
    let child;
    try {
      child = spawn(ffmpegCommand(), ['-hide_banner', '-version'], { stdio: ['ignore', 'pipe', 'ignore'] });
    } catch (err) {
      reject(noFfmpeg(err));
      return;
    }
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => (out += chunk));
    child.on('error', (err) => reject(noFfmpeg(err)));
    child.on('close', (code) => {
      if (code === 0) resolve(out.split('\n')[0].trim());
      else reject(noFfmpeg(new Error(`'${ffmpegCommand()} -version' exited with ${code}`)));
    });
  });
}

/**
 * Runs `ffmpeg <args>` writing `input` chunks (raw frames) to its stdin, with backpressure.
 * Resolves when FFmpeg exits 0. Rejects with ERR_WAN_NO_FFMPEG when the binary is missing,
 * ERR_WAN_ABORTED when `signal` fires (FFmpeg is killed), ERR_WAN_INTERNAL with FFmpeg's
 * stderr tail otherwise. The caller owns the output file and removes it on failure.
 */
export function runFfmpeg(args: string[], input: Iterable<Uint8Array>, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return Promise.reject(abortedError('video encoding'));
  return new Promise((resolve, reject) => {
    let settled = false;
    let aborted = false;
    let stderrTail = '';
    const child = spawn(ffmpegCommand(), ['-hide_banner', '-loglevel', 'error', ...args], {
      stdio: ['pipe', 'ignore', 'pipe'],
    });

    const settle = (err?: Error) => {
      if (settled) return;
      settled = true;
      signal?.removeEventListener('abort', onAbort);
      if (err) reject(err);
      else resolve();
    };
    // One listener, removed when the run settles (one per save would pile up on a shared signal).
    const onAbort = () => {
      aborted = true;
      child.stdin.destroy(); // stop feeding at once
      child.kill('SIGKILL');
    };
    signal?.addEventListener('abort', onAbort, { once: true });

    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk: string) => {
      stderrTail = (stderrTail + chunk).slice(-STDERR_TAIL_BYTES);
    });
    child.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT' || err.code === 'EACCES') settle(noFfmpeg(err));
      else settle(new WanError('ERR_WAN_INTERNAL', `wan-video: cannot run ffmpeg: ${err.message}`, { cause: err }));
    });
    child.on('close', (code, sig) => {
      if (aborted) settle(abortedError('video encoding'));
      else if (code === 0) settle();
      else {
        const why = code !== null ? `exited with code ${code}` : `was killed by ${sig}`;
        settle(new WanError('ERR_WAN_INTERNAL', `wan-video: ffmpeg ${why}: ${stderrTail.trim() || '(no message)'}`));
      }
    });

    // If FFmpeg dies early its stdin breaks (EPIPE); the exit code above reports why, so the
    // stream error itself is dropped.
    pipeline(Readable.from(input), child.stdin).catch(() => undefined);
  });
}
