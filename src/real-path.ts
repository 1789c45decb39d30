// Where a path really leads, for telling whether two paths name one file or one lies inside the
// other, also before they exist (a store or reject file a job is about to create).
import { existsSync, lstatSync, readlinkSync, realpathSync, statSync } from 'node:fs';
import { dirname, relative, resolve, sep } from 'node:path';

/** Links followed at most, as the kernel does (ELOOP past 40). */
const MAX_LINKS = 40;

/**
 * The real path of `path`, or of its nearest existing ancestor with the rest appended (it may not
 * exist yet). A link whose target does not exist yet leads to that target: a file created
 * through it appears there.
 */
export function realOrResolved(path: string, links = 0): string {
  const absolute = resolve(path);
  if (existsSync(absolute)) return realpathSync(absolute);
  if (links < MAX_LINKS && isLink(absolute)) return realOrResolved(resolve(dirname(absolute), readlinkSync(absolute)), links + 1);
  const parent = dirname(absolute);
  return parent === absolute ? absolute : resolve(realOrResolved(parent, links), relative(parent, absolute));
}

function isLink(path: string): boolean {
  try {
    return lstatSync(path).isSymbolicLink();
  } catch {
    return false;
  }
}

/**
 * Whether `a` and `b` name one file: the same device and inode where both exist (hard links,
 * bind mounts), else the same real path.
 */
export function sameFile(a: string, b: string): boolean {
  const first = statSync(a, { throwIfNoEntry: false });
  const second = statSync(b, { throwIfNoEntry: false });
  if (first && second) return first.dev === second.dev && first.ino === second.ino;
  return realOrResolved(a) === realOrResolved(b);
}

/**
 * Whether `path` really lies inside `folder`, links followed on both sides: a file a model folder
 * names that is a link out of the folder lies outside it, however its name is spelled.
 */
export function liesInside(path: string, folder: string): boolean {
  const outer = realOrResolved(folder);
  return realOrResolved(path).startsWith(outer.endsWith(sep) ? outer : outer + sep);
}
