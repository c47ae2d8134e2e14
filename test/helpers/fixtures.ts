import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { loadCaseByName } from '../../lib/fixtures.js';

export const FIXTURES = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'wan-tiny');

export function fixtureCase(family: string, caseName: string) {
  return loadCaseByName(FIXTURES, family, caseName);
}
