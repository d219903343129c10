import { InvalidRequestError } from '../domain/errors.js';

/**
 * Calico selectors, the part profiles use: `all()`, `has(k)`, `k == "v"`, `k != "v"`, `!`, `&&`, `||`
 * and parentheses. Parsed once into a predicate over an endpoint's labels.
 */
export type Selector = (labels: Record<string, string>) => boolean;

const TOKEN = /\s*(all\(\)|has\(\s*[A-Za-z0-9_./-]+\s*\)|==|!=|&&|\|\||!|\(|\)|"[^"]*"|'[^']*'|[A-Za-z0-9_./-]+)/y;

function tokenize(text: string): string[] {
  const tokens: string[] = [];
  TOKEN.lastIndex = 0;
  while (TOKEN.lastIndex < text.length) {
    if (/^\s*$/.test(text.slice(TOKEN.lastIndex))) break;
    const start = TOKEN.lastIndex;
    const match = TOKEN.exec(text);
    if (!match) throw new InvalidRequestError(`invalid selector ${JSON.stringify(text)}: unexpected ${JSON.stringify(text.slice(start, start + 10))}`);
    tokens.push(match[1]!);
  }
  return tokens;
}

export function parseSelector(text: string): Selector {
  const tokens = tokenize(text);
  let position = 0;
  const fail = (): never => {
    throw new InvalidRequestError(`invalid selector ${JSON.stringify(text)}`);
  };
  const peek = (): string | undefined => tokens[position];
  const take = (): string => tokens[position++] ?? fail();

  const factor = (): Selector => {
    const token = take();
    if (token === '!') {
      const inner = factor();
      return (labels) => !inner(labels);
    }
    if (token === '(') {
      const inner = expression();
      if (take() !== ')') fail();
      return inner;
    }
    if (token === 'all()') return () => true;
    const has = /^has\(\s*(.+?)\s*\)$/.exec(token);
    if (has) return (labels) => has[1]! in labels;
    if (!/^[A-Za-z0-9_./-]+$/.test(token)) fail();
    const operator = take();
    const quoted = take();
    if ((operator !== '==' && operator !== '!=') || !/^(".*"|'.*')$/.test(quoted)) fail();
    const value = quoted.slice(1, -1);
    return operator === '==' ? (labels) => labels[token] === value : (labels) => labels[token] !== value;
  };
  const term = (): Selector => {
    const parts = [factor()];
    while (peek() === '&&') {
      take();
      parts.push(factor());
    }
    return (labels) => parts.every((p) => p(labels));
  };
  const expression = (): Selector => {
    const parts = [term()];
    while (peek() === '||') {
      take();
      parts.push(term());
    }
    return (labels) => parts.some((p) => p(labels));
  };
  if (tokens.length === 0) fail();
  const selector = expression();
  if (position !== tokens.length) fail();
  return selector;
}
