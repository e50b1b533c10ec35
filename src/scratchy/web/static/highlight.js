// A tiny syntax highlighter: comments, strings, numbers and keywords as <span>s of Text nodes.

const KEYWORDS = {
  python:
    "and as assert async await break class continue def del elif else except False finally for from global if import in is lambda None nonlocal not or pass raise return True try while with yield match case self",
  js: "async await break case catch class const continue debugger default delete do else export extends false finally for function if import in instanceof let new null of return static super switch this throw true try typeof undefined var void while with yield",
  sh: "if then else elif fi for while until do done case esac function in export local return exit echo cd set unset source",
  go: "break case chan const continue default defer else fallthrough for func go goto if import interface map package range return select struct switch type var nil true false",
  rust: "as async await break const continue crate else enum extern false fn for if impl in let loop match mod move mut pub ref return self Self static struct super trait true type unsafe use where while",
  sql: "select from where and or not insert into values update set delete create table index drop alter join left right inner outer on group by order limit offset as null is in like having distinct union",
  json: "true false null",
};
const ALIASES = {
  py: "python", python3: "python", javascript: "js", ts: "js", typescript: "js", jsx: "js",
  tsx: "js", mjs: "js", bash: "sh", shell: "sh", zsh: "sh", console: "sh", golang: "go",
  rs: "rust", postgresql: "sql", sqlite: "sql",
};
const HASH_COMMENTS = new Set(["python", "sh", "toml", "yaml", "ruby", "r"]);
const cache = new Map();

function tokenizer(lang) {
  if (cache.has(lang)) return cache.get(lang);
  const words = KEYWORDS[lang];
  const parts = [];
  if (HASH_COMMENTS.has(lang)) parts.push("(#[^\\n]*)");
  else if (lang === "sql") parts.push("(--[^\\n]*)");
  else parts.push("(\\/\\/[^\\n]*|\\/\\*[\\s\\S]*?\\*\\/)");
  parts.push(
    '("""[\\s\\S]*?"""|\'\'\'[\\s\\S]*?\'\'\'|"(?:\\\\.|[^"\\\\\\n])*"|\'(?:\\\\.|[^\'\\\\\\n])*\'|`(?:\\\\.|[^`\\\\])*`)',
  );
  parts.push("(\\b\\d[\\d_]*(?:\\.\\d+)?(?:[eE][+-]?\\d+)?\\b|\\b0x[\\da-fA-F]+\\b)");
  parts.push(words ? `(\\b(?:${words.split(" ").join("|")})\\b)` : "(?!)");
  const re = new RegExp(parts.join("|"), lang === "sql" ? "gi" : "g");
  cache.set(lang, re);
  return re;
}

const CLASSES = [null, "tok-comment", "tok-string", "tok-number", "tok-keyword"];

export function highlight(code, lang) {
  const name = ALIASES[(lang || "").toLowerCase()] || (lang || "").toLowerCase();
  if (!name || code.length > 200000 || name === "text" || name === "plain") {
    return [document.createTextNode(code)];
  }
  const re = tokenizer(name);
  re.lastIndex = 0;
  const out = [];
  let last = 0;
  let m;
  while ((m = re.exec(code))) {
    if (m[0] === "") {
      re.lastIndex++;
      continue;
    }
    if (m.index > last) out.push(document.createTextNode(code.slice(last, m.index)));
    const group = m.findIndex((g, idx) => idx > 0 && g !== undefined);
    const span = document.createElement("span");
    span.className = CLASSES[group] || "";
    span.textContent = m[0];
    out.push(span);
    last = m.index + m[0].length;
  }
  if (last < code.length) out.push(document.createTextNode(code.slice(last)));
  return out;
}
