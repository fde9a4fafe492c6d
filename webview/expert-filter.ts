// Sets of ids typed as text ("3, 17, 40-47"): the expert search box that highlights a set of
// experts in every view (128 hues cannot be told apart, a marked set can), and the token range
// a specialisation selection can be typed as. One parser, so both read the same way.

/** A parsed id set: membership by id (1 = in the set), how many, and the text it came from. */
export interface IdSet {
  member: Uint8Array;
  count: number;
  text: string;
}

/**
 * Parses ids and inclusive ranges separated by commas or spaces, each id optionally prefixed
 * with `prefix` ("e3", "e40-e47"). Throws an Error naming the bad term and the valid range.
 */
export function parseIdSet(text: string, size: number, what = "expert", prefix = "e"): IdSet {
  const member = new Uint8Array(size);
  let count = 0;
  const id = (s: string, term: string): number => {
    const bare = s.toLowerCase().startsWith(prefix) ? s.slice(prefix.length) : s;
    if (!/^\d+$/.test(bare)) throw new Error(`"${term}" is neither an id nor a range like 40-47 (${what} ids run from 0 to ${size - 1})`);
    const n = Number(bare);
    if (n >= size) throw new Error(`${what} ${n} does not exist: ids run from 0 to ${size - 1}`);
    return n;
  };
  for (const term of text.split(/[\s,;]+/).filter(Boolean)) {
    const dash = term.indexOf("-", 1);
    const from = id(dash < 0 ? term : term.slice(0, dash), term);
    const to = dash < 0 ? from : id(term.slice(dash + 1), term);
    if (to < from) throw new Error(`"${term}": the range runs backwards`);
    for (let i = from; i <= to; i++) {
      if (!member[i]) count++;
      member[i] = 1;
    }
  }
  return { member, count, text };
}
