/**
 * Characters a reader does not see as they are: controls, invisible marks and the bidi
 * embeddings, overrides and isolates that reorder what is drawn (Trojan Source,
 * CVE-2021-42574). A proposal holding one reads differently from how it runs, so every one is
 * drawn, and inserted, as its escape; the completion status and the provenance marks show
 * names through it too. The ranges are the project's one list,
 * rsql_common/hidden_characters.py (tests/unit/test_proposal_bundle.py holds the two equal):
 * the kernel escapes them already, this is for what it never prepared (a notebook file, an
 * older kernel). Pure: no JupyterLab import.
 */

// (first, last) code points, both included; tab and newline are layout and not here
export const HIDDEN_RANGES: ReadonlyArray<readonly [number, number]> = [
  [0x00, 0x08], // C0 controls
  [0x0b, 0x1f], // C0 controls, carriage return among them
  [0x7f, 0x9f], // DEL and the C1 controls
  [0xad, 0xad], // soft hyphen
  [0x034f, 0x034f], // combining grapheme joiner
  [0x061c, 0x061c], // Arabic letter mark
  [0x115f, 0x1160], // Hangul fillers
  [0x17b4, 0x17b5], // Khmer inherent vowels
  [0x180e, 0x180e], // Mongolian vowel separator
  [0x200b, 0x200f], // zero-width space and joiners, direction marks
  [0x2028, 0x202e], // line and paragraph separators, bidi embeddings and overrides
  [0x2060, 0x206f], // word joiner, invisible operators, bidi isolates
  [0x3164, 0x3164], // Hangul filler
  [0xfeff, 0xfeff], // zero-width no-break space
  [0xffa0, 0xffa0], // halfwidth Hangul filler
  [0xfff9, 0xfffb], // interlinear annotation marks
  [0xe0000, 0xe007f] // tags: invisible copies of ASCII letters
];

const point = (cp: number): string => `\\u{${cp.toString(16)}}`;
const HIDDEN = new RegExp(
  `[${HIDDEN_RANGES.map(([a, b]) => (a === b ? point(a) : `${point(a)}-${point(b)}`)).join('')}]`,
  'gu'
);

/** A character's escape as Python writes it in a string (`\x1b`, `\r`, `\u202e`, `\U000e0041`). */
function escape(char: string): string {
  const cp = char.codePointAt(0) ?? 0;
  if (cp === 0x0d) {
    return '\\r';
  }
  const [mark, width] = cp < 0x100 ? ['x', 2] : cp < 0x10000 ? ['u', 4] : ['U', 8];
  return `\\${mark}${cp.toString(16).padStart(width, '0')}`;
}

/** `text` with every hidden character written as its escape: visible, and ASCII. */
export function shownText(text: string): string {
  return text.replace(HIDDEN, escape);
}

/** How many hidden characters `text` holds. */
export function hiddenCount(text: string): number {
  return text.match(HIDDEN)?.length ?? 0;
}
