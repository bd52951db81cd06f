/**
 * "Perhaps you meant ..." hints: the closest known name to a misspelt one, the way PostgREST's fuzzy
 * set finds it: candidates share at least one 2- or 3-letter gram with the name, and are scored by
 * edit distance (1.0 = identical). PostgREST suggests tables above 0.75, relationships above 0.33.
 */

function editDistance(a: string, b: string): number {
  const previous = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let diagonal = previous[0]!;
    previous[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = previous[j]!;
      previous[j] = Math.min(above + 1, previous[j - 1]! + 1, diagonal + (a[i - 1] === b[j - 1] ? 0 : 1));
      diagonal = above;
    }
  }
  return previous[b.length]!;
}

export function similarity(a: string, b: string): number {
  const longest = Math.max(a.length, b.length);
  if (longest === 0) return 1;
  return 1 - editDistance(a.toLowerCase(), b.toLowerCase()) / longest;
}

function grams(text: string): Set<string> {
  const padded = `-${text.toLowerCase()}-`;
  const found = new Set<string>();
  for (const size of [2, 3]) {
    for (let i = 0; i + size <= padded.length; i++) found.add(padded.slice(i, i + size));
  }
  return found;
}

/** The candidate most similar to `name` with a score of at least `minScore`. */
export function closest(name: string, candidates: Iterable<string>, minScore: number): string | undefined {
  const nameGrams = grams(name);
  let best: string | undefined;
  let bestScore = minScore;
  for (const candidate of candidates) {
    if (![...grams(candidate)].some((gram) => nameGrams.has(gram))) continue;
    const score = similarity(name, candidate);
    if (score >= bestScore && (best === undefined || score > bestScore)) {
      best = candidate;
      bestScore = score;
    }
  }
  return best;
}
