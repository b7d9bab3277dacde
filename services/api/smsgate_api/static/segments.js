// How a text splits into SMS parts: the same rules as smsgate_agent.pdu.count_segments.
// GSM 7-bit when every character is in the GSM 03.38 alphabet (extension characters cost
// two septets): 160 in one part, 153 per part when concatenated. Otherwise UCS-2: 70 UTF-16
// units in one part, 67 per part. A character never straddles two parts.

const BASIC =
  "@£$¥èéùìòÇ\nØø\rÅå" + "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ" + " !\"#¤%&'()*+,-./" + "0123456789:;<=>?" +
  "¡ABCDEFGHIJKLMNO" + "PQRSTUVWXYZÄÖÑÜ§" + "¿abcdefghijklmno" + "pqrstuvwxyzäöñüà";
const EXTENSION = "\f^{}\\[~]|€";

const SEPTETS = new Map();
for (const char of BASIC) if (char !== "\x1b") SEPTETS.set(char, 1);
for (const char of EXTENSION) SEPTETS.set(char, 2);

const SINGLE = { gsm7: 160, ucs2: 70 };
const MULTI = { gsm7: 153, ucs2: 67 };

/** {alphabet, parts, units, perPart, left, error}: `left` is what still fits in the last part. */
export function countSegments(text) {
  const chars = Array.from(text); // code points, as Python iterates a str
  const lone = chars.find((c) => c.length === 1 && c.charCodeAt(0) >= 0xd800 && c.charCodeAt(0) <= 0xdfff);
  if (lone !== undefined) {
    return { alphabet: "ucs2", parts: 0, units: 0, perPart: 0, left: 0, error: "the text contains a broken character" };
  }
  const gsm = chars.every((c) => SEPTETS.has(c));
  const alphabet = gsm ? "gsm7" : "ucs2";
  const costs = chars.map((c) => (gsm ? SEPTETS.get(c) : c.length));
  const units = costs.reduce((a, b) => a + b, 0);
  if (units <= SINGLE[alphabet]) {
    return { alphabet, parts: 1, units, perPart: SINGLE[alphabet], left: SINGLE[alphabet] - units, error: null };
  }
  const capacity = MULTI[alphabet];
  let parts = 1;
  let used = 0;
  for (const cost of costs) {
    if (used + cost > capacity) {
      parts += 1;
      used = 0;
    }
    used += cost;
  }
  return { alphabet, parts, units, perPart: capacity, left: capacity - used, error: null };
}
