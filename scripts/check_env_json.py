"""events/env.json must give each function exactly the environment variables template.yaml gives it.

Run with the tools venv (it parses the template with cfn-lint's decoder):
    .tools-venv/bin/python scripts/check_env_json.py
`sam local invoke --env-vars` silently ignores a variable the template does not declare, and a
variable missing from env.json falls back to the template's value (a !Ref that means nothing
locally), so both directions are errors. It also refuses values that look like secrets.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from cfnlint.decode import decode

ROOT = Path(__file__).resolve().parent.parent
# env.json holds secret ids, never secret values.
SECRET_LIKE = re.compile(r"(?i)^(whsec_|sk-|AKIA)|^[A-Za-z0-9+/=_-]{40,}$")


def main() -> int:
    template, errors = decode(str(ROOT / "template.yaml"))
    if errors or template is None:
        print(f"cannot read template.yaml: {errors}", file=sys.stderr)
        return 2
    env_json = json.loads((ROOT / "events" / "env.json").read_text())
    global_vars = template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
    problems = []
    functions = {
        name: resource
        for name, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
    }
    for name, resource in functions.items():
        own = resource.get("Properties", {}).get("Environment", {}).get("Variables", {})
        declared = set(global_vars) | set(own)
        given = env_json.get(name)
        if given is None:
            problems.append(f"{name}: missing from events/env.json")
            continue
        if missing := sorted(declared - set(given)):
            problems.append(f"{name}: env.json lacks {', '.join(missing)}")
        if extra := sorted(set(given) - declared):
            problems.append(f"{name}: env.json has {', '.join(extra)}, which template.yaml does not declare")
        for key, value in given.items():
            if not isinstance(value, str):
                problems.append(f"{name}.{key}: values must be strings")
            elif SECRET_LIKE.search(value):
                problems.append(f"{name}.{key}: looks like a secret value; env.json holds only ids")
    # A top-level "Parameters" entry applies to every function (SAM's own convention).
    if extra_functions := sorted(set(env_json) - set(functions) - {"Parameters"}):
        problems.append(f"env.json names functions the template lacks: {', '.join(extra_functions)}")
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        print(f"events/env.json matches template.yaml ({', '.join(sorted(functions))})")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
