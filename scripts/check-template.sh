#!/usr/bin/env bash
# Offline checks of template.yaml (run by `make template-check`, part of `make test`):
#  1. `sam validate --lint` (cfn-lint as SAM runs it, with SAM's settings),
#  2. `cfn-lint` on its own (fails on errors and warnings). cfn-lint checks SAM resources against
#     SAM's schemas but does not run the SAM transform, so:
#  3. the project's rules (Python below) run on the template the SAM translator makes (a failed
#     translation fails the check), which covers the roles SAM generates too:
#     - no Allow statement has a wildcard action, NotAction or NotResource, and "*" resources
#       only for actions that take no resource ARN; Deny statements may use wildcards (they
#       only ever take permissions away, e.g. the artifacts bucket's TLS-only policy);
#     - every DefinitionSubstitutions key is used by the ASL file and every ${...} in the ASL
#       file is a key (checked when the ASL file exists);
#     - the DynamoDB table's keys, index, billing and TTL match `create_table` in the
#       shared/src/state/dynamo module (names read from its files, not written twice), and IAM
#       grants name only that index;
#     - the schedule's execution input is JSON whose fields the Init input and the migration
#       options (shared/src/stages/init.rs, shared/src/config.rs) accept;
#     - the longest timeout of the functions that take leases is the one the lease length is
#       made from (LEASED_FUNCTION_TIMEOUT_SECONDS in shared/src/context.rs);
#     - every variable the functions' environment sets is read by name in the Rust sources;
#     - the dashboard's body renders to JSON, and the dashboard and alarms name only metrics and
#       dimensions the functions emit (shared/src/metrics.rs), and show every one of them.
# No AWS account is needed: dummy credentials and a fixed region keep every tool offline.
# `--rules-only` skips 1 and 2 (the tests of the rules themselves run them on broken copies of the
# template, where only the rules' verdict matters).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/.venv/bin"
rules_only=false
if [ "${1:-}" = "--rules-only" ]; then
  rules_only=true
  shift
fi
template=$(realpath "${1:-$root/template.yaml}")

for tool in sam cfn-lint python; do
  if [ ! -x "$bin/$tool" ]; then
    echo "check-template: $bin/$tool is missing; run scripts/venv.sh (or make venv)" >&2
    exit 1
  fi
done

export SAM_CLI_TELEMETRY=0
export AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1
export AWS_ACCESS_KEY_ID=offline-check AWS_SECRET_ACCESS_KEY=offline-check
export AWS_EC2_METADATA_DISABLED=true
unset AWS_PROFILE AWS_SESSION_TOKEN

cd "$(dirname "$template")"
if [ "$rules_only" = false ]; then
  echo "check-template: sam validate --lint" >&2
  "$bin/sam" validate --lint --template "$template"
  echo "check-template: cfn-lint" >&2
  "$bin/cfn-lint" -- "$template"
fi
echo "check-template: IAM, state machine substitutions, state table" >&2
"$bin/python" - "$template" "$root/shared/src" <<'PY'
import copy
import itertools
import json
import os
import re
import sys

from cfnlint.decode import decode
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator

template_path, rust_src = sys.argv[1], sys.argv[2]
dynamo_rs = os.path.join(rust_src, "state", "dynamo.rs")
template_dir = os.path.dirname(os.path.abspath(template_path))
problems = []

template, decode_errors = decode(template_path)
if decode_errors or template is None:
    sys.exit(f"cannot read {template_path}: {decode_errors}")
template = json.loads(json.dumps(template))  # plain dicts and lists, no line-number nodes


def resources_of(tpl, kind):
    return {k: v for k, v in tpl.get("Resources", {}).items() if v.get("Type") == kind}


# ---- IAM: checked on the translated template, so the roles SAM generates are covered too ----
def translated(tpl):
    """The CloudFormation template SAM would deploy (local code paths replaced, as sam does)."""
    sam = copy.deepcopy(tpl)
    sam.get("Globals", {}).get("Function", {})["CodeUri"] = "s3://bucket/code.zip"
    for resource in sam["Resources"].values():
        props = resource.get("Properties", {})
        if resource["Type"] == "AWS::Serverless::Function" and "CodeUri" in props:
            props["CodeUri"] = "s3://bucket/code.zip"
        if resource["Type"] == "AWS::Serverless::StateMachine" and "DefinitionUri" in props:
            props["DefinitionUri"] = {"Bucket": "bucket", "Key": "definition.asl.json"}
    params = {"AWS::Region": "us-east-1", "AWS::Partition": "aws", "AWS::AccountId": "123456789012"}
    translator = Translator(managed_policy_map=None, sam_parser=Parser(), plugins=[])
    return translator.translate(sam, parameter_values=params, get_managed_policy_map=lambda: {})


# Actions that accept no resource ARN, so "*" is the only possible Resource.
RESOURCELESS_ACTIONS = {
    "logs:CreateLogDelivery",
    "logs:GetLogDelivery",
    "logs:UpdateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",
}


def strings(node):
    """Literal strings in a value, through intrinsic functions (Fn::If, Fn::Sub, Fn::Join...)."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, list):
        for item in node:
            yield from strings(item)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key in ("Ref", "Fn::GetAtt"):
                continue  # names of resources and parameters, not patterns
            if key == "Fn::If" and isinstance(value, list):
                value = value[1:]  # the condition's name is no value
            yield from strings(value)


def statements(node, where):
    """Every IAM statement (a dict with Effect) anywhere in the template, with its location."""
    if isinstance(node, dict):
        if "Effect" in node and ("Action" in node or "NotAction" in node):
            yield where, node
        for key, value in node.items():
            yield from statements(value, f"{where}.{key}")
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from statements(item, f"{where}[{index}]")


def check_statement(where, statement):
    if statement.get("Effect") != "Allow":
        return
    for key in ("NotAction", "NotResource"):
        if key in statement:
            problems.append(f"{where}: Allow with {key} grants everything else")
    actions = list(strings(statement.get("Action", [])))
    for action in actions:
        if "*" in action or "?" in action:
            problems.append(f"{where}: wildcard action {action!r}")
    for resource in strings(statement.get("Resource", [])):
        if resource == "*":
            extra = sorted(set(actions) - RESOURCELESS_ACTIONS)
            if extra:
                problems.append(f"{where}: Resource '*' for {extra}")
        elif "*" in resource.replace("/*", ""):
            # "/*" (every object of one bucket, every execution of one state machine) is fine.
            problems.append(f"{where}: wildcard resource {resource!r}")


try:
    cfn = translated(template)
except Exception as error:  # the translator's own errors name the resource
    sys.exit(f"SAM translation failed: {error}")
found = list(statements(cfn.get("Resources", {}), "Resources"))
if not found:
    problems.append("no IAM statement found in the translated template")
for where, statement in found:
    check_statement(where, statement)

# ---- State machine substitutions ----
for name, machine in resources_of(template, "AWS::Serverless::StateMachine").items():
    props = machine.get("Properties", {})
    uri = props.get("DefinitionUri")
    if not isinstance(uri, str):
        continue
    asl_path = os.path.join(template_dir, uri)
    if not os.path.exists(asl_path):
        print(f"check-template: {uri} does not exist yet; substitutions not checked", file=sys.stderr)
        continue
    with open(asl_path, encoding="utf-8") as f:
        asl = f.read()
    try:
        json.loads(asl)
    except ValueError as error:
        problems.append(f"{uri}: not JSON: {error}")
    keys = set(props.get("DefinitionSubstitutions", {}))
    used = set(re.findall(r"\$\{([^}]+)\}", asl))
    for key in sorted(keys - used):
        problems.append(f"{name}: DefinitionSubstitutions key {key} is not used in {uri}")
    for key in sorted(used - keys):
        problems.append(f"{uri}: ${{{key}}} has no DefinitionSubstitutions entry in {name}")

# ---- State table versus create_table ----
def upper_snake(camel):
    return re.sub(r"(?<!^)([A-Z])", r"_\1", camel).upper()


# The module's files (dynamo.rs and dynamo/*.rs), read as one text: constants and create_table.
dynamo_dir = os.path.splitext(dynamo_rs)[0]
rust = ""
for path in [dynamo_rs] + sorted(
    os.path.join(dynamo_dir, name) for name in os.listdir(dynamo_dir) if name.endswith(".rs")
):
    with open(path, encoding="utf-8") as f:
        rust += f.read() + "\n"
consts = dict(re.findall(r'const\s+(\w+)\s*:\s*&str\s*=\s*"([^"]*)"\s*;', rust))


def need(pattern, text, what):
    match = re.search(pattern, text, re.S)
    if not match:
        sys.exit(f"cannot read {what} from {dynamo_rs}; update scripts/check-template.sh")
    return match


def name_of(token):
    return consts[token] if token in consts else token.strip('"')


def keys_in(text):
    return [
        {"AttributeName": name_of(n), "KeyType": upper_snake(k)}
        for n, k in re.findall(r"key\((\w+|\"[^\"]*\"),\s*KeyType::(\w+)\)", text)
    ]


body = need(r"pub async fn create_table\b.*?\n}\n", rust, "create_table").group(0)
gsi_text = need(r"GlobalSecondaryIndex::builder\(\)(.*?)\.build\(\)\s*\.map_err", body, "the index").group(1)
table_text = need(r"\.create_table\(\)(.*?)\.send\(\)", body, "the table request").group(1)
ttl_text = need(r"TimeToLiveSpecification::builder\(\)(.*?)\.build\(\)", body, "the TTL").group(1)
need(r"attribute_type\(ScalarAttributeType::S\)", body, "the string attribute type")

expected = {
    "AttributeDefinitions": sorted(
        ({"AttributeName": name_of(n), "AttributeType": "S"}
         for n in re.findall(r"attribute_definitions\(string_attribute\((\w+|\"[^\"]*\")\)", table_text)),
        key=lambda a: a["AttributeName"],
    ),
    "KeySchema": keys_in(table_text),
    "BillingMode": upper_snake(need(r"BillingMode::(\w+)", table_text, "the billing mode").group(1)),
    "GlobalSecondaryIndexes": [{
        "IndexName": name_of(need(r"\.index_name\((\w+|\"[^\"]*\")\)", gsi_text, "the index name").group(1)),
        "KeySchema": keys_in(gsi_text),
        "Projection": {"ProjectionType": upper_snake(need(r"ProjectionType::(\w+)", gsi_text, "the projection").group(1))},
    }],
    "TimeToLiveSpecification": {
        "AttributeName": name_of(need(r"\.attribute_name\((\w+|\"[^\"]*\")\)", ttl_text, "the TTL attribute").group(1)),
        "Enabled": "enabled(true)" in ttl_text,
    },
}
if not expected["AttributeDefinitions"] or not expected["KeySchema"] or not expected["GlobalSecondaryIndexes"][0]["KeySchema"]:
    sys.exit(f"cannot read the keys from {dynamo_rs}; update scripts/check-template.sh")

tables = resources_of(template, "AWS::DynamoDB::Table")
if len(tables) != 1:
    problems.append(f"expected one DynamoDB table, found {sorted(tables)}")
for name, table in tables.items():
    props = table.get("Properties", {})
    actual = {
        "AttributeDefinitions": sorted(props.get("AttributeDefinitions", []), key=lambda a: a.get("AttributeName", "")),
        "KeySchema": props.get("KeySchema"),
        "BillingMode": props.get("BillingMode"),
        "GlobalSecondaryIndexes": props.get("GlobalSecondaryIndexes"),
        "TimeToLiveSpecification": props.get("TimeToLiveSpecification"),
    }
    for field, want in expected.items():
        if actual[field] != want:
            problems.append(f"{name}.{field} is {json.dumps(actual[field])}, create_table makes {json.dumps(want)}")

# IAM grants on an index name it: it must be one the table has.
index_names = {i["IndexName"] for i in expected["GlobalSecondaryIndexes"]}
for where, statement in found:
    for resource in strings(statement.get("Resource", [])):
        for index in re.findall(r"/index/([^/*]+)", resource):
            if index not in index_names:
                problems.append(f"{where}: index {index} is not an index of the table ({sorted(index_names)})")

# ---- Schedule input versus the Init input and the options ----
def rust_fields(file, struct):
    with open(os.path.join(rust_src, file), encoding="utf-8") as f:
        text = f.read()
    body = need(rf"pub struct {struct}\s*\{{(.*?)\n\}}", text, f"struct {struct}").group(1)
    return {re.sub(r"_(\w)", lambda m: m.group(1).upper(), name) for name in re.findall(r"pub (\w+):", body)}


init_fields = rust_fields("stages/init.rs", "InitInput")
option_fields = rust_fields("config.rs", "MigrationOptions")
parameters = template.get("Parameters", {})


def sample(name):
    """A value the parameter may take, to render the input; "1" stands in for empty defaults."""
    spec = parameters.get(name, {})
    return str(spec.get("Default") or (spec.get("AllowedValues") or ["1"])[0])


def branches(value):
    """Every value a Fn::Sub variable may take: a literal, a Ref, or either side of a Fn::If."""
    if isinstance(value, dict) and "Fn::If" in value:
        return branches(value["Fn::If"][1]) + branches(value["Fn::If"][2])
    if isinstance(value, dict) and "Ref" in value:
        return [sample(value["Ref"])]
    return [str(value)]


for name, schedule in resources_of(template, "AWS::Scheduler::Schedule").items():
    sub = schedule.get("Properties", {}).get("Target", {}).get("Input", {}).get("Fn::Sub")
    if isinstance(sub, list) and len(sub) == 2 and isinstance(sub[0], str) and isinstance(sub[1], dict):
        body, variables = sub
    elif isinstance(sub, str):
        body, variables = sub, {}
    else:
        problems.append(f"{name}: Target.Input is expected as a Fn::Sub string (with variables or not)")
        continue
    # Every combination of the variables' branches must render an input Init accepts.
    names = sorted(variables)
    for values in itertools.product(*(branches(variables[v]) for v in names)):
        chosen = dict(zip(names, values))
        try:
            rendered = json.loads(re.sub(r"\$\{([\w:]+)\}",
                                         lambda m: chosen.get(m.group(1)) or sample(m.group(1)), body))
        except ValueError as error:
            problems.append(f"{name}: Target.Input does not render to JSON with {chosen}: {error}")
            continue
        for key in sorted(set(rendered) - init_fields):
            problems.append(f"{name}: input field {key} is not a field of InitInput")
        for key in sorted(set(rendered.get("options", {})) - option_fields):
            problems.append(f"{name}: option {key} is not a field of MigrationOptions")

# ---- Leases versus the timeouts of the functions that take them ----
# A dead invocation's lease must expire soon after that invocation could last have been alive:
# the lease (context.rs) is the longest such timeout plus a minute, so that timeout is the template's.
with open(os.path.join(rust_src, "context.rs"), encoding="utf-8") as f:
    leased_timeout = int(need(r"LEASED_FUNCTION_TIMEOUT_SECONDS: u64 = (\d+);", f.read(),
                              "LEASED_FUNCTION_TIMEOUT_SECONDS").group(1))
functions = resources_of(template, "AWS::Serverless::Function")
global_timeout = template.get("Globals", {}).get("Function", {}).get("Timeout")
leasing = {name: functions.get(name, {}).get("Properties", {}).get("Timeout", global_timeout)
           for name in ("StartCopyFunction", "CopyPartsFunction", "CompleteFunction")}
if max(t or 0 for t in leasing.values()) != leased_timeout:
    problems.append(f"the copy functions' timeouts {leasing} must top out at "
                    f"LEASED_FUNCTION_TIMEOUT_SECONDS = {leased_timeout} (context.rs), which sets the lease")

# ---- The functions' environment versus what they read ----
# A variable the template sets that no function reads is a setting with no effect (a typo, say).
read_by_functions = ""
for src in [rust_src] + [os.path.join(template_dir, "functions", d, "src")
                         for d in sorted(os.listdir(os.path.join(template_dir, "functions")))]:
    for folder, _, names in os.walk(src):
        for name in names:
            if name.endswith(".rs"):
                with open(os.path.join(folder, name), encoding="utf-8") as f:
                    read_by_functions += f.read()
variables = template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
for variable in sorted(variables):
    if f'"{variable}"' not in read_by_functions:
        problems.append(f"Globals sets {variable}, which no function reads (no \"{variable}\" in the Rust sources)")

# ---- Dashboard and alarms versus the metrics the functions emit ----
with open(os.path.join(rust_src, "metrics.rs"), encoding="utf-8") as f:
    metrics_rs = f.read()
names_fn = need(r"pub fn name\(self\)(.*?)\n    \}", metrics_rs, "Metric::name").group(1)
emitted = set(re.findall(r'Metric::\w+ => "(\w+)"', names_fn))
dimensions = set(re.findall(r'const \w+_DIMENSION: &str = "(\w+)";', metrics_rs))
if not emitted or not dimensions:
    sys.exit("cannot read the metric names from shared/src/metrics.rs; update scripts/check-template.sh")
NAMESPACE = "synmigrate/${AWS::StackName}"


def ours(namespace):
    return namespace == NAMESPACE or namespace == {"Fn::Sub": NAMESPACE}


shown = set()
for name, dashboard in resources_of(template, "AWS::CloudWatch::Dashboard").items():
    body = dashboard.get("Properties", {}).get("DashboardBody", {}).get("Fn::Sub")
    text, variables = (body if isinstance(body, list) else [body, {}])
    if not isinstance(text, str) or "Namespace" not in variables:
        problems.append(f"{name}: DashboardBody is expected as Fn::Sub [body, {{Namespace: ...}}]")
        continue
    if not ours(variables["Namespace"]):
        problems.append(f"{name}: its Namespace is not {NAMESPACE}")
    try:
        rendered = json.loads(re.sub(r"\$\{([^}]+)\}", lambda m: "NS" if m.group(1) == "Namespace" else "x", text))
    except ValueError as error:
        problems.append(f"{name}: DashboardBody does not render to JSON: {error}")
        continue
    for widget in rendered.get("widgets", []):
        namespace = None
        for row in widget.get("properties", {}).get("metrics", []):
            if row and isinstance(row[0], dict):
                expression = row[0].get("expression", "")
                for metric in re.findall(r'MetricName="(\w+)"', expression):
                    shown.add(metric)
                    if metric not in emitted:
                        problems.append(f"{name}: {metric} in {expression!r} is not emitted")
                for dimension in re.findall(r"\{NS,([\w,]+)\}", expression):
                    for d in dimension.split(","):
                        if d not in dimensions:
                            problems.append(f"{name}: dimension {d} in {expression!r} is not emitted")
                continue
            if row[0] != ".":
                namespace = row[0]
            if namespace == "NS":
                metric = row[1] if row[1] != "." else None
                if metric is not None:
                    shown.add(metric)
                    if metric not in emitted:
                        problems.append(f"{name}: metric {metric} is not one the functions emit ({sorted(emitted)})")
for metric in sorted(emitted - shown):
    problems.append(f"the dashboard does not show {metric}, which the functions emit")
for name, alarm in resources_of(template, "AWS::CloudWatch::Alarm").items():
    props = alarm.get("Properties", {})
    stats = [props] + [m.get("MetricStat", {}).get("Metric", {}) for m in props.get("Metrics", [])]
    for stat in stats:
        if ours(stat.get("Namespace")) and stat.get("MetricName") not in emitted:
            problems.append(f"{name}: metric {stat.get('MetricName')} is not one the functions emit")
        if "Namespace" in stat and not ours(stat["Namespace"]) and not str(stat["Namespace"]).startswith("AWS/"):
            problems.append(f"{name}: namespace {stat['Namespace']} is neither ours nor AWS's")

if problems:
    print("check-template: FAILED", file=sys.stderr)
    for problem in problems:
        print(f"  - {problem}", file=sys.stderr)
    sys.exit(1)
print(f"check-template: {len(found)} IAM statements, state table {sorted(tables)} match the rules", file=sys.stderr)
PY
echo "check-template: ok" >&2
