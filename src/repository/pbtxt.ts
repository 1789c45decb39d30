// Protobuf text format, the subset Triton model configs use: `field: value`, `field { ... }`
// (also `field: { ... }` and `< ... >`), repeated fields by repetition or `[a, b]` lists, quoted
// strings with escapes (adjacent strings concatenate), numbers, enum identifiers, true/false, and
// `#` comments. Without the schema we cannot know which fields are repeated: a field seen once
// is a plain value, seen again it becomes an array, and the caller normalizes known repeated
// fields with `asArray`.
import { UmbraError } from '../errors.js';

export type PbtxtValue = string | number | boolean | PbtxtMessage | PbtxtValue[];
export interface PbtxtMessage {
  [field: string]: PbtxtValue;
}

type Token =
  | { kind: 'ident'; text: string; line: number; column: number }
  | { kind: 'string'; text: string; line: number; column: number }
  | { kind: 'number'; text: string; line: number; column: number }
  | { kind: 'punct'; text: string; line: number; column: number }
  | { kind: 'end'; text: ''; line: number; column: number };

const PUNCTUATION = new Set(['{', '}', '<', '>', '[', ']', ':', ',', ';']);
const ESCAPES: Record<string, string> = { n: '\n', t: '\t', r: '\r', '\\': '\\', "'": "'", '"': '"', '0': '\0', a: '\x07', b: '\b', f: '\f', v: '\v' };

class Lexer {
  private pos = 0;
  private line = 1;
  private lineStart = 0;

  constructor(private readonly text: string, private readonly file: string) {}

  fail(line: number, column: number, message: string): never {
    throw new UmbraError('INVALID_ARGUMENT', `${this.file}:${line}:${column}: ${message}`);
  }

  next(): Token {
    this.skipSpaceAndComments();
    const line = this.line;
    const column = this.pos - this.lineStart + 1;
    if (this.pos >= this.text.length) return { kind: 'end', text: '', line, column };
    const c = this.text[this.pos]!;
    if (PUNCTUATION.has(c)) {
      this.pos++;
      return { kind: 'punct', text: c, line, column };
    }
    if (c === '"' || c === "'") return { kind: 'string', text: this.readString(c, line, column), line, column };
    const word = /^[A-Za-z0-9_.+-]+/.exec(this.text.slice(this.pos, this.pos + 256));
    if (!word) this.fail(line, column, `unexpected character ${JSON.stringify(c)}`);
    this.pos += word[0].length;
    const text = word[0];
    const kind = /^[+-]?(\d|\.\d)/.test(text) || /^[+-]?(inf|nan)$/i.test(text) ? 'number' : 'ident';
    return { kind, text, line, column };
  }

  private skipSpaceAndComments(): void {
    while (this.pos < this.text.length) {
      const c = this.text[this.pos]!;
      if (c === '\n') {
        this.pos++;
        this.line++;
        this.lineStart = this.pos;
      } else if (c === ' ' || c === '\t' || c === '\r') {
        this.pos++;
      } else if (c === '#') {
        while (this.pos < this.text.length && this.text[this.pos] !== '\n') this.pos++;
      } else {
        return;
      }
    }
  }

  private readString(quote: string, line: number, column: number): string {
    let out = '';
    this.pos++;
    while (true) {
      if (this.pos >= this.text.length || this.text[this.pos] === '\n') this.fail(line, column, 'unterminated string');
      const c = this.text[this.pos++]!;
      if (c === quote) return out;
      if (c !== '\\') {
        out += c;
        continue;
      }
      const e = this.text[this.pos++] ?? '';
      if (e in ESCAPES) out += ESCAPES[e];
      else if (e === 'x') {
        const hex = /^[0-9A-Fa-f]{1,2}/.exec(this.text.slice(this.pos));
        if (!hex) this.fail(this.line, this.pos - this.lineStart, 'expected hex digits after \\x');
        out += String.fromCharCode(parseInt(hex[0], 16));
        this.pos += hex[0].length;
      } else this.fail(this.line, this.pos - this.lineStart, `unknown escape \\${e}`);
    }
  }
}

class Parser {
  private token: Token;

  constructor(private readonly lexer: Lexer) {
    this.token = lexer.next();
  }

  parseDocument(): PbtxtMessage {
    const message = this.parseFields('end');
    return message;
  }

  private advance(): Token {
    const current = this.token;
    this.token = this.lexer.next();
    return current;
  }

  private fail(token: Token, expected: string): never {
    const found = token.kind === 'end' ? 'the end of the file' : `${JSON.stringify(token.text)}`;
    this.lexer.fail(token.line, token.column, `expected ${expected} but found ${found}`);
  }

  private isPunct(text: string): boolean {
    return this.token.kind === 'punct' && this.token.text === text;
  }

  private expectPunct(text: string): void {
    if (!this.isPunct(text)) this.fail(this.token, `"${text}"`);
    this.advance();
  }

  /** Fields until `close` ('}' / '>') or the end of the file for the top level. */
  private parseFields(close: '}' | '>' | 'end'): PbtxtMessage {
    const message: PbtxtMessage = {};
    while (true) {
      if (close === 'end' ? this.token.kind === 'end' : this.isPunct(close)) return message;
      if (this.token.kind !== 'ident') {
        this.fail(this.token, close === 'end' ? 'a field name' : `a field name or "${close}"`);
      }
      const nameToken = this.advance();
      const name = nameToken.text;
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) this.fail(nameToken, 'a field name');
      let value: PbtxtValue;
      if (this.isPunct(':')) {
        this.advance();
        value = this.isPunct('[') ? this.parseList() : this.parseValue();
      } else if (this.isPunct('{') || this.isPunct('<')) {
        value = this.parseMessage();
      } else if (this.isPunct('[')) {
        // Message lists may omit the colon (`input [ { ... } ]`), as Triton's examples do.
        value = this.parseList();
      } else {
        this.fail(this.token, `":" or "{" after field ${name}`);
      }
      const existing = message[name];
      if (existing === undefined) message[name] = value;
      else if (Array.isArray(existing)) {
        if (Array.isArray(value)) existing.push(...value);
        else existing.push(value);
      } else message[name] = Array.isArray(value) ? [existing, ...value] : [existing, value];
      if (this.isPunct(',') || this.isPunct(';')) this.advance();
    }
  }

  private parseMessage(): PbtxtMessage {
    const open = this.advance().text;
    const close = open === '{' ? '}' : '>';
    const message = this.parseFields(close);
    this.expectPunct(close);
    return message;
  }

  private parseList(): PbtxtValue[] {
    this.expectPunct('[');
    const items: PbtxtValue[] = [];
    if (this.isPunct(']')) {
      this.advance();
      return items;
    }
    while (true) {
      items.push(this.parseValue());
      if (this.isPunct(',')) {
        this.advance();
        continue;
      }
      this.expectPunct(']');
      return items;
    }
  }

  private parseValue(): PbtxtValue {
    const token = this.token;
    if (this.isPunct('{') || this.isPunct('<')) return this.parseMessage();
    if (token.kind === 'string') {
      let text = this.advance().text;
      while (this.token.kind === 'string') text += this.advance().text;
      return text;
    }
    if (token.kind === 'number') {
      this.advance();
      return parseNumber(token.text, () => this.fail(token, 'a number'));
    }
    if (token.kind === 'ident') {
      this.advance();
      if (token.text === 'true' || token.text === 'True' || token.text === 't') return true;
      if (token.text === 'false' || token.text === 'False' || token.text === 'f') return false;
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(token.text)) this.fail(token, 'a value');
      return token.text;
    }
    this.fail(token, 'a value');
  }
}

function parseNumber(text: string, fail: () => never): number {
  if (/^[+-]?inf(inity)?$/i.test(text)) return text.startsWith('-') ? -Infinity : Infinity;
  if (/^[+-]?nan$/i.test(text)) return NaN;
  if (/^[+-]?0x[0-9a-f]+$/i.test(text)) {
    const n = parseInt(text.replace(/^([+-]?)0x/i, '$1'), 16);
    return n;
  }
  // Protobuf allows an `f` suffix on floats (1.5f).
  const body = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?[fF]?$/.test(text) ? text.replace(/[fF]$/, '') : '';
  if (!body) fail();
  return Number(body);
}

/** Parse protobuf text format. Errors are INVALID_ARGUMENT "<file>:<line>:<column>: expected ...". */
export function parsePbtxt(text: string, file = 'config.pbtxt'): PbtxtMessage {
  return new Parser(new Lexer(text, file)).parseDocument();
}

/** A repeated field as an array whether it appeared once, several times, or as a list. */
export function asArray<T>(value: T | T[] | undefined): T[] {
  if (value === undefined) return [];
  return Array.isArray(value) ? value : [value];
}
