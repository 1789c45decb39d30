// Strings numbered by first appearance, for messages that name the same few strings many times
// (the I/O hop's envelopes, the prediction log's packed batches): the sender looks each one up,
// the receiver only indexes `list`.
export class StringTable {
  readonly list: string[] = [];
  private readonly index = new Map<string, number>();

  /** The string's number, given it on first sight. */
  id(s: string): number {
    let i = this.index.get(s);
    if (i === undefined) {
      i = this.list.length;
      this.list.push(s);
      this.index.set(s, i);
    }
    return i;
  }
}
