"""schemathesis hooks for scripts/schemathesis.sh: the rules of thresh's request schemas that
JSON Schema cannot state, because they compare two fields of one request.

Each is a 400 naming the field, documented in the field's description:
- `min_tokens` may not exceed the `max_tokens` (or `max_completion_tokens`) of the request;
- under an aligned strategy, `alignment.candidates` (or `best_of`) is at least `n`;
- `best_of` needs an alignment strategy other than `none`;
- one decision schedule: at most one of `alignment.decision_tokens`,
  `first_decision_tokens` and `kv_budget_tokens`; `decision_tokens` strictly increasing;
- `alignment.correct` is not streamed;
- at most one grammar (`response_format` json_object/json_schema, `guided_json`,
  `guided_regex`, `guided_grammar`, `guided_choice`); `response_format.json_schema` is given
  with type `json_schema` and only with it;
- a grammar compiles: whether a generated regex, Lark text or JSON schema is well-formed is
  not a schema keyword, so generated ones are dropped (`guided_choice`, JSON-object mode and
  a `json_schema` without `schema` remain, and compile whatever they hold); for the same
  reason tools with generated `parameters` are dropped;
- `tool_choice` and `parallel_tool_calls` need `tools`; function names are distinct; a named
  `tool_choice` names one of them; tools do not come with another grammar;
- the prompt fits the server's `--max-input-tokens` (SCHEMATHESIS_MAX_INPUT_TOKENS here). A
  token count is not a schema keyword; the bound used is safe for the demo policy's
  byte-level BPE, where a token covers at least one byte: UTF-8 bytes of the text, plus the
  chat template's tokens (at most 8 per message and 64 for its fixed text).
Generated bodies that break one are dropped here rather than reported as schema-valid
requests rejected (a schema-invalid body that also breaks one is refused either way).
"""

import json
import os

import schemathesis

MAX_INPUT_TOKENS = int(os.environ.get("SCHEMATHESIS_MAX_INPUT_TOKENS", "256"))


def _int(v):
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _may_exceed_the_input_limit(body):
    prompt = body.get("prompt")
    if isinstance(prompt, list) and all(_int(t) is not None for t in prompt):
        return len(prompt) > MAX_INPUT_TOKENS
    messages = body.get("messages")
    count = len(messages) if isinstance(messages, list) else 0
    # Every byte of the body's text fields counts, over-estimating (keys and punctuation too).
    # Tools come in as a system message of their own text plus about 80 tokens of instructions.
    text = json.dumps([prompt, messages, body.get("tools")], ensure_ascii=False)
    return len(text.encode("utf-8", "surrogatepass")) + 8 * count + 160 > MAX_INPUT_TOKENS


def _breaks_a_grammar_rule(body):
    fmt = body.get("response_format")
    grammars = 0
    if isinstance(fmt, dict):
        kind = fmt.get("type")
        spec = fmt.get("json_schema")
        if (kind == "json_schema") != (spec is not None):
            return True
        if isinstance(spec, dict) and spec.get("schema") is not None:
            return True
        grammars += kind in ("json_object", "json_schema")
    for key in ("guided_json", "guided_regex", "guided_grammar"):
        if body.get(key) is not None:
            return True
    grammars += body.get("guided_choice") is not None
    if grammars > 1:
        return True
    return _breaks_a_tool_rule(body, grammars)


def _breaks_a_tool_rule(body, grammars):
    tools = body.get("tools")
    choice = body.get("tool_choice")
    if tools is None:
        return choice is not None or body.get("parallel_tool_calls") is not None
    if not isinstance(tools, list):
        return False
    functions = [t.get("function") for t in tools if isinstance(t, dict)]
    functions = [f for f in functions if isinstance(f, dict)]
    if any(f.get("parameters") is not None for f in functions):
        return True
    names = [f.get("name") for f in functions]
    if len(set(map(str, names))) < len(names):
        return True
    if isinstance(choice, dict):
        named = choice.get("function")
        if isinstance(named, dict) and named.get("name") not in names:
            return True
    return choice != "none" and grammars > 0


def _breaks_a_cross_field_rule(body):
    low = _int(body.get("min_tokens"))
    high = _int(body.get("max_tokens"))
    if high is None:
        high = _int(body.get("max_completion_tokens"))
    if low is not None and high is not None and low > high:
        return True
    alignment = body.get("alignment")
    if not isinstance(alignment, dict):
        alignment = {}
    strategy = alignment.get("strategy")
    best_of = _int(body.get("best_of"))
    candidates = _int(alignment.get("candidates"))
    if strategy == "none" and best_of is not None:
        return True
    aligned = strategy not in (None, "none") or best_of is not None or candidates is not None
    n = _int(body.get("n"))
    n = 1 if n is None else n
    given = candidates if candidates is not None else best_of
    if aligned and given is not None and given < n:
        return True
    schedules = [alignment.get(k) for k in
                 ("decision_tokens", "first_decision_tokens", "kv_budget_tokens")]
    if sum(s is not None for s in schedules) > 1:
        return True
    taus = alignment.get("decision_tokens")
    if isinstance(taus, list) and any(
            _int(a) is not None and _int(b) is not None and a >= b
            for a, b in zip(taus, taus[1:])):
        return True
    if _breaks_a_grammar_rule(body):
        return True
    if _may_exceed_the_input_limit(body):
        return True
    correct = alignment.get("correct")
    if body.get("stream") is True and correct not in (None, False, "off"):
        return True
    return False


@schemathesis.hook
def filter_case(context, case):
    # filter_case, not filter_body: the coverage phase applies only case hooks.
    body = case.body
    if not isinstance(body, dict):
        return True
    return not _breaks_a_cross_field_rule(body)
