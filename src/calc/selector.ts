import { InvalidRequestError } from '../domain/errors.js';

/**
 * Calico's selector language, ported from libcalico-go `selector/tokenizer` and `selector/parser`
 * (see shared/reference/calico-v3-policy.md §3):
 *
 *   selector := ε | or                        (empty, or only spaces/tabs, means all())
 *   or       := and { "||" and }
 *   and      := unary { "&&" unary }
 *   unary    := { "!" } primary
 *   primary  := "(" or ")" | "all()" | "global()" | "has(" label ")"
 *             | label cmp string | label setop "{" [ string { "," string } [","] ] "}"
 *   cmp      := "==" | "!=" | "contains" | "starts with" | "ends with"
 *   setop    := "in" | "not in"
 *
 * Labels are 1–512 characters of [A-Za-z0-9_./-]; strings are "…" or '…' without escapes. Only space
 * and tab separate tokens. Parsed once into a predicate over an endpoint's labels; errors are
 * InvalidRequestErrors naming the 0-based character position and what was expected there.
 */
export type Selector = (labels: Record<string, string>) => boolean;

export type CompareOp = '==' | '!=' | 'contains' | 'starts with' | 'ends with';
export type SetOp = 'in' | 'not in';

/** A parsed selector. `and`/`or` are flattened; `not` chains are collapsed by parity. */
export type SelectorExpr =
  | { kind: 'all' }
  | { kind: 'global' }
  | { kind: 'has'; label: string }
  | { kind: 'compare'; op: CompareOp; label: string; value: string }
  | { kind: 'set'; op: SetOp; label: string; values: string[] }
  | { kind: 'not'; expr: SelectorExpr }
  | { kind: 'and'; exprs: SelectorExpr[] }
  | { kind: 'or'; exprs: SelectorExpr[] };

type TokenKind =
  | '(' | ')' | '{' | '}' | ',' | '!' | '&&' | '||' | 'eof'
  | 'string' | 'label' | 'has' | 'all' | 'global'
  | CompareOp | SetOp;

interface Token {
  kind: TokenKind;
  pos: number;
  /** The label (label, has) or the string's contents (string). */
  value: string;
}

const MAX_LABEL = 512;
const isLabelChar = (c: number): boolean =>
  (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || (c >= 48 && c <= 57) || c === 95 || c === 46 || c === 47 || c === 45;
/** Go's \w, which ends a word operator (`in\b`). */
const isWordChar = (c: number): boolean => (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || (c >= 48 && c <= 57) || c === 95;
const isSpace = (c: number): boolean => c === 32 || c === 9;

const PRIMARY = 'a label, has(), all(), global(), ! or (';
const OPERATOR = 'an operator: ==, !=, contains, starts with, ends with, in or not in';

class Parser {
  private pos = 0;
  private token: Token;
  private previous: TokenKind | undefined;

  constructor(private readonly text: string) {
    this.token = this.scan();
  }

  fail(pos: number, message: string): never {
    const where = pos >= this.text.length ? `at position ${pos} (the end)` : `at position ${pos}`;
    throw new InvalidRequestError(`invalid selector ${JSON.stringify(this.text)} ${where}: ${message}`);
  }

  private skipSpaces(from: number): number {
    let i = from;
    while (i < this.text.length && isSpace(this.text.charCodeAt(i))) i++;
    return i;
  }

  /** Matches a word operator (words separated by any spaces/tabs, or none) followed by a word boundary. */
  private word(at: number, words: string[]): number | undefined {
    let i = at;
    for (let w = 0; w < words.length; w++) {
      if (w > 0) i = this.skipSpaces(i);
      if (!this.text.startsWith(words[w]!, i)) return undefined;
      i += words[w]!.length;
    }
    return i < this.text.length && isWordChar(this.text.charCodeAt(i)) ? undefined : i;
  }

  private readLabel(at: number): number {
    let i = at;
    while (i < this.text.length && isLabelChar(this.text.charCodeAt(i))) i++;
    if (i - at > MAX_LABEL) this.fail(at + MAX_LABEL, `a label is at most ${MAX_LABEL} characters`);
    return i;
  }

  /** `has(`, `all(`, `global(` with the parenthesis right after the keyword. */
  private keyword(at: number, name: 'has' | 'all' | 'global'): Token | undefined {
    const text = this.text;
    if (!text.startsWith(`${name}(`, at)) return undefined;
    let i = this.skipSpaces(at + name.length + 1);
    let value = '';
    if (name === 'has') {
      const end = this.readLabel(i);
      if (end === i) this.fail(i, 'expected a label inside has()');
      value = text.slice(i, end);
      i = this.skipSpaces(end);
    }
    if (text[i] !== ')') this.fail(i, `expected ) to close ${name}(`);
    this.pos = i + 1;
    return { kind: name, pos: at, value };
  }

  private scan(): Token {
    const text = this.text;
    const start = this.skipSpaces(this.pos);
    const afterLabel = this.previous === 'label';
    const simple = (kind: TokenKind, length: number): Token => {
      this.pos = start + length;
      return { kind, pos: start, value: '' };
    };
    if (start >= text.length) {
      this.pos = start;
      return { kind: 'eof', pos: start, value: '' };
    }
    const c = text[start]!;
    switch (c) {
      case '(': case ')': case '{': case '}': case ',':
        return simple(c as TokenKind, 1);
      case '"': case "'": {
        const end = text.indexOf(c, start + 1);
        if (end < 0) this.fail(start, `unterminated string: no closing ${c}`);
        this.pos = end + 1;
        return { kind: 'string', pos: start, value: text.slice(start + 1, end) };
      }
      case '=':
        if (text[start + 1] === '=') return simple('==', 2);
        return this.fail(start, 'expected == (a single = is not an operator)');
      case '!':
        return text[start + 1] === '=' ? simple('!=', 2) : simple('!', 1);
      case '&':
        if (text[start + 1] === '&') return simple('&&', 2);
        return this.fail(start, 'expected && (a single & is not an operator)');
      case '|':
        if (text[start + 1] === '|') return simple('||', 2);
        return this.fail(start, 'expected || (a single | is not an operator)');
      case '\n': case '\r':
        return this.fail(start, 'a line break is not allowed (only spaces and tabs separate tokens)');
    }
    if (afterLabel) {
      const ops: [TokenKind, string[]][] = [['contains', ['contains']], ['starts with', ['starts', 'with']], ['ends with', ['ends', 'with']], ['in', ['in']], ['not in', ['not', 'in']]];
      for (const [kind, words] of ops) {
        const end = this.word(start, words);
        if (end !== undefined) {
          this.pos = end;
          return { kind, pos: start, value: '' };
        }
      }
    }
    const keyword = this.keyword(start, 'has') ?? this.keyword(start, 'all') ?? this.keyword(start, 'global');
    if (keyword) return keyword;
    const end = this.readLabel(start);
    if (end === start) this.fail(start, `unexpected character ${JSON.stringify(c)}`);
    this.pos = end;
    return { kind: 'label', pos: start, value: text.slice(start, end) };
  }

  /** The current token's kind (a method, so TypeScript does not narrow it across next()). */
  private peek(): TokenKind {
    return this.token.kind;
  }

  private next(): Token {
    const token = this.token;
    this.previous = token.kind;
    this.token = this.scan();
    return token;
  }

  private expect(kind: TokenKind, what: string): Token {
    if (this.token.kind !== kind) this.fail(this.token.pos, `expected ${what}`);
    return this.next();
  }

  parse(): SelectorExpr {
    if (this.token.kind === 'eof') return { kind: 'all' };
    const expr = this.or();
    if (this.peek() !== 'eof') this.fail(this.token.pos, 'expected &&, || or the end of the selector');
    return expr;
  }

  private or(): SelectorExpr {
    const exprs = [this.and()];
    while (this.token.kind === '||') {
      this.next();
      exprs.push(this.and());
    }
    return exprs.length === 1 ? exprs[0]! : { kind: 'or', exprs };
  }

  private and(): SelectorExpr {
    const exprs = [this.unary()];
    while (this.token.kind === '&&') {
      this.next();
      exprs.push(this.unary());
    }
    return exprs.length === 1 ? exprs[0]! : { kind: 'and', exprs };
  }

  private unary(): SelectorExpr {
    let negations = 0;
    while (this.token.kind === '!') {
      this.next();
      negations++;
    }
    const expr = this.primary();
    return negations % 2 === 1 ? { kind: 'not', expr } : expr;
  }

  private primary(): SelectorExpr {
    const token = this.token;
    switch (token.kind) {
      case '(': {
        this.next();
        const expr = this.or();
        this.expect(')', '), && or ||');
        return expr;
      }
      case 'all':
      case 'global':
        this.next();
        return { kind: token.kind };
      case 'has':
        this.next();
        return { kind: 'has', label: token.value };
      case 'label':
        break;
      default:
        this.fail(token.pos, `expected ${PRIMARY}`);
    }
    this.next();
    const label = token.value;
    const op = this.token;
    switch (op.kind) {
      case '==': case '!=': case 'contains': case 'starts with': case 'ends with': {
        this.next();
        const value = this.expect('string', 'a quoted string, "…" or \'…\'').value;
        return { kind: 'compare', op: op.kind, label, value };
      }
      case 'in': case 'not in': {
        this.next();
        this.expect('{', '{ to open a set of strings');
        const values: string[] = [];
        while (this.token.kind !== '}') {
          values.push(this.expect('string', 'a quoted string or }').value);
          if (this.peek() === '}') break;
          this.expect(',', ', or }');
        }
        this.next();
        return { kind: 'set', op: op.kind, label, values };
      }
      default: {
        const hint = ['has', 'all', 'global'].includes(label) && op.kind === '(' ? ` (write ${label}( with no space before the parenthesis)` : '';
        return this.fail(op.pos, `expected ${OPERATOR} after the label ${JSON.stringify(label)}${hint}`);
      }
    }
  }
}

/** Parses without the cache; throws InvalidRequestError with the 0-based position of the problem. */
export function parseSelectorExpr(text: string): SelectorExpr {
  return new Parser(text).parse();
}

/** Whether the expression contains global() anywhere (legal only in an EntityRule namespaceSelector). */
export function exprUsesGlobal(expr: SelectorExpr): boolean {
  switch (expr.kind) {
    case 'global':
      return true;
    case 'not':
      return exprUsesGlobal(expr.expr);
    case 'and':
    case 'or':
      return expr.exprs.some(exprUsesGlobal);
    default:
      return false;
  }
}

/** Builds the predicate: closures only, no parsing or regex at evaluation time. */
export function compileSelector(expr: SelectorExpr): Selector {
  switch (expr.kind) {
    case 'all':
    case 'global':
      return () => true;
    case 'has': {
      const k = expr.label;
      return (labels) => typeof labels[k] === 'string';
    }
    case 'compare': {
      const k = expr.label;
      const v = expr.value;
      switch (expr.op) {
        case '==':
          return (labels) => labels[k] === v;
        case '!=':
          return (labels) => labels[k] !== v;
        case 'contains':
          return (labels) => {
            const x = labels[k];
            return typeof x === 'string' && x.includes(v);
          };
        case 'starts with':
          return (labels) => {
            const x = labels[k];
            return typeof x === 'string' && x.startsWith(v);
          };
        case 'ends with':
          return (labels) => {
            const x = labels[k];
            return typeof x === 'string' && x.endsWith(v);
          };
      }
      break;
    }
    case 'set': {
      const k = expr.label;
      const values = new Set(expr.values);
      // Set.has on a non-string (absent label, inherited property) is false.
      return expr.op === 'in' ? (labels) => values.has(labels[k]!) : (labels) => !values.has(labels[k]!);
    }
    case 'not': {
      const inner = compileSelector(expr.expr);
      return (labels) => !inner(labels);
    }
    case 'and': {
      const parts = expr.exprs.map(compileSelector);
      if (parts.length === 2) {
        const [a, b] = parts as [Selector, Selector];
        return (labels) => a(labels) && b(labels);
      }
      return (labels) => {
        for (const p of parts) if (!p(labels)) return false;
        return true;
      };
    }
    case 'or': {
      const parts = expr.exprs.map(compileSelector);
      if (parts.length === 2) {
        const [a, b] = parts as [Selector, Selector];
        return (labels) => a(labels) || b(labels);
      }
      return (labels) => {
        for (const p of parts) if (p(labels)) return true;
        return false;
      };
    }
  }
  throw new Error('unreachable');
}

interface Parsed {
  selector: Selector;
  usesGlobal: boolean;
}

const CACHE_LIMIT = 2048;
const cache = new Map<string, Parsed>();

function parsed(text: string): Parsed {
  let entry = cache.get(text);
  if (!entry) {
    const expr = parseSelectorExpr(text);
    entry = { selector: compileSelector(expr), usesGlobal: exprUsesGlobal(expr) };
    if (cache.size >= CACHE_LIMIT) cache.delete(cache.keys().next().value!);
    cache.set(text, entry);
  }
  return entry;
}

/**
 * Parses a selector into a predicate over labels (cached by text). The empty selector, or one of only
 * spaces/tabs, is all(), as in Calico. Throws InvalidRequestError naming the 0-based position.
 */
export function parseSelector(text: string): Selector {
  return parsed(text).selector;
}

/** Whether a selector uses global(); throws InvalidRequestError like parseSelector if it does not parse. */
export function usesGlobal(text: string): boolean {
  return parsed(text).usesGlobal;
}
