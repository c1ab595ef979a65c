/**
 * Which language a request is in: the cell magic on the cell's first line wins (%%R is R,
 * %%sql and %%sql_ai are SQL, whatever the kernel), else the kernel's (or the file's) language.
 */

const R_MAGIC = /^%%R(\s|$)/;
const SQL_MAGIC = /^%%(sql|sql_ai)(\s|$)/;
// the proxy takes "any short str": keep it a plain word, never a sentence or markup
const LANGUAGE_NAME = /^[a-z][a-z0-9+#._-]{0,31}$/;

/** The cell's first non-blank line, left-trimmed ('' for a blank cell). */
function firstLine(text: string): string {
  for (const line of text.split('\n')) {
    const trimmed = line.trimStart();
    if (trimmed) {
      return trimmed;
    }
  }
  return '';
}

/** A language name as the proxy takes it, or null when `name` is none. */
export function normalLanguage(name: string | null | undefined): string | null {
  const lowered = (name ?? '').trim().toLowerCase();
  return LANGUAGE_NAME.test(lowered) ? lowered : null;
}

/** The language of a file editor's MIME type, for editors with no kernel. */
export function mimeLanguage(mime: string | null | undefined): string | null {
  switch ((mime ?? '').toLowerCase()) {
    case 'text/x-python':
    case 'text/x-ipython':
      return 'python';
    case 'text/x-rsrc':
    case 'text/x-r':
      return 'r';
    case 'text/x-sql':
    case 'text/x-mysql':
    case 'text/x-pgsql':
    case 'text/x-sqlite':
      return 'sql';
    default:
      return null;
  }
}

/** The language of a cell: its magic, else the kernel's, else the editor's, else python. */
export function cellLanguage(
  cellText: string,
  kernelLanguage: string | null,
  editorLanguage: string | null = null
): string {
  const line = firstLine(cellText);
  if (R_MAGIC.test(line)) {
    return 'r';
  }
  if (SQL_MAGIC.test(line)) {
    return 'sql';
  }
  return normalLanguage(kernelLanguage) ?? normalLanguage(editorLanguage) ?? 'python';
}
