#!/usr/bin/python3
"""Checks examples/aws_lambda/template.yaml against the binary it deploys.

usage: check_template.py --binary <aws_lambda_example> [--self-test] template.yaml

What the binary serves and uses comes from `<binary> --describe` (handler modes, route selection
expression, the authorizer's identity source, the connection table's keys and TTL attribute), so
the template cannot drift from the code. With --self-test, the checks are then run on broken
copies of the template, each of which must fail with the expected complaint.
"""
import argparse
import copy
import json
import os
import re
import subprocess
import sys
import tempfile

import yaml  # Debian: python3-yaml


# ---- CloudFormation YAML: the short-form intrinsic functions become their long forms ----------
class CfnLoader(yaml.SafeLoader):
    pass


def _intrinsic(tag, name):
    def construct(loader, node):
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
            if name == "Fn::GetAtt":
                value = value.split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        return {name: value}
    CfnLoader.add_constructor(tag, construct)


_intrinsic("!Ref", "Ref")
_intrinsic("!Condition", "Condition")
for _fn in ("GetAtt", "Sub", "Join", "If", "Equals", "Not", "And", "Or", "Select", "Split", "FindInMap",
            "ImportValue", "GetAZs", "Base64", "Cidr", "Transform"):
    _intrinsic("!" + _fn, "Fn::" + _fn)


def load(path):
    with open(path) as f:
        return yaml.load(f, Loader=CfnLoader)


# ---- references ---------------------------------------------------------------------------------
def sub_text(value):
    """The template string of a Fn::Sub (either form), or None."""
    if isinstance(value, dict) and "Fn::Sub" in value:
        s = value["Fn::Sub"]
        return s[0] if isinstance(s, list) else s
    return None


def refs(value):
    """Logical ids (and pseudo parameters) a value refers to: Ref, Fn::GetAtt, ${X} / ${X.Attr} in Fn::Sub."""
    out = set()
    if isinstance(value, dict):
        for k, v in value.items():
            if k == "Ref" and isinstance(v, str):
                out.add(v)
            elif k == "Fn::GetAtt":
                out.add(v[0] if isinstance(v, list) else str(v).split(".")[0])
            elif k == "Fn::Sub":
                text = v[0] if isinstance(v, list) else v
                out.update(m.split(".")[0] for m in re.findall(r"\$\{([^}!]+)\}", text))
                if isinstance(v, list) and len(v) > 1:
                    out.update(refs(v[1]))
            else:
                out.update(refs(v))
    elif isinstance(value, list):
        for v in value:
            out.update(refs(v))
    return out


def merged_function_props(tpl, props):
    """A function's properties with Globals.Function under them (SAM merges Variables maps)."""
    merged = copy.deepcopy(tpl.get("Globals", {}).get("Function", {}))
    for k, v in props.items():
        if k == "Environment" and "Environment" in merged:
            merged["Environment"] = {"Variables": {**merged["Environment"].get("Variables", {}),
                                                   **v.get("Variables", {})}}
        else:
            merged[k] = v
    return merged


def check(tpl, desc, makefile_text):
    """Every problem found in the template, as sentences (empty: all good)."""
    problems = []
    err = problems.append
    res = tpl.get("Resources", {})

    def of_type(t):
        return {k: v for k, v in res.items() if v.get("Type") == t}

    if tpl.get("Transform") != "AWS::Serverless-2016-10-31":
        err("Transform is not AWS::Serverless-2016-10-31")

    # Functions: the binary as bootstrap, built by the Makefile, in a mode the binary knows.
    modes = {h["name"] for h in desc["handlers"]}
    functions = {}
    for fid, fn in of_type("AWS::Serverless::Function").items():
        p = merged_function_props(tpl, fn.get("Properties", {}))
        functions[fid] = p
        if p.get("Runtime") != "provided.al2023":
            err(f"{fid}: Runtime is {p.get('Runtime')}, not provided.al2023")
        if p.get("Handler") != "bootstrap":
            err(f"{fid}: Handler is not bootstrap")
        if not p.get("Architectures"):
            err(f"{fid}: no Architectures")
        if not p.get("CodeUri"):
            err(f"{fid}: no CodeUri")
        if fn.get("Metadata", {}).get("BuildMethod") != "makefile":
            err(f"{fid}: Metadata BuildMethod is not makefile")
        if not re.search(rf"^build-{re.escape(fid)}\s*:", makefile_text, re.M):
            err(f"{fid}: the Makefile has no build-{fid} target")
        mode = p.get("Environment", {}).get("Variables", {}).get("WSGATE_HANDLER")
        if mode not in modes:
            err(f"{fid}: WSGATE_HANDLER {mode!r} is not a mode the binary serves ({', '.join(sorted(modes))})")
    if not functions:
        err("no AWS::Serverless::Function")

    def mode_of(fid):
        return functions.get(fid, {}).get("Environment", {}).get("Variables", {}).get("WSGATE_HANDLER")

    def function_in(value):
        """The one template function a value (an integration or authorizer URI) invokes, or None."""
        found = [r for r in refs(value) if r in functions]
        return found[0] if len(found) == 1 else None

    # The API and its routes.
    apis = of_type("AWS::ApiGatewayV2::Api")
    if len(apis) != 1:
        err(f"expected one AWS::ApiGatewayV2::Api, found {len(apis)}")
        return problems
    api_id, api = next(iter(apis.items()))
    if api["Properties"].get("ProtocolType") != "WEBSOCKET":
        err("the API's ProtocolType is not WEBSOCKET")
    if api["Properties"].get("RouteSelectionExpression") != desc["route_selection_expression"]:
        err(f"RouteSelectionExpression is {api['Properties'].get('RouteSelectionExpression')!r}, "
            f"the binary routes by {desc['route_selection_expression']!r}")
    integrations = of_type("AWS::ApiGatewayV2::Integration")
    authorizers = of_type("AWS::ApiGatewayV2::Authorizer")
    routes = {r["Properties"].get("RouteKey"): (rid, r["Properties"]) for rid, r in of_type("AWS::ApiGatewayV2::Route").items()}
    invoked = {}  # function id -> "integration" / "authorizer"
    for key in ("$connect", "$disconnect", "$default"):
        if key not in routes:
            err(f"no {key} route")
            continue
        rid, rp = routes[key]
        if api_id not in refs(rp.get("ApiId")):
            err(f"route {key} is not on {api_id}")
        target = sub_text(rp.get("Target")) or ""
        m = re.fullmatch(r"integrations/\$\{([^}]+)\}", target)
        if not m or m.group(1) not in integrations:
            err(f"route {key}: Target {rp.get('Target')!r} is not integrations/${{<an integration of the template>}}")
            continue
        ip = integrations[m.group(1)]["Properties"]
        fid = function_in(ip.get("IntegrationUri"))
        if ip.get("IntegrationType") != "AWS_PROXY":
            err(f"route {key}: integration {m.group(1)} is not AWS_PROXY")
        if fid is None:
            err(f"route {key}: integration {m.group(1)} invokes no function defined in the template")
        elif mode_of(fid) != "websocket":
            err(f"route {key}: goes to {fid}, whose WSGATE_HANDLER is {mode_of(fid)!r}, not 'websocket'")
        else:
            invoked[fid] = "integration"
        if key != "$connect" and rp.get("AuthorizerId"):
            err(f"route {key}: API Gateway only runs authorizers on $connect")
    if "$connect" in routes:
        _, cp = routes["$connect"]
        auth_ids = [r for r in refs(cp.get("AuthorizerId")) if r in authorizers]
        if cp.get("AuthorizationType") != "CUSTOM" or len(auth_ids) != 1:
            err("$connect has no CUSTOM authorizer of the template")
        else:
            ap = authorizers[auth_ids[0]]["Properties"]
            if ap.get("AuthorizerType") != "REQUEST":
                err("the $connect authorizer is not a REQUEST authorizer")
            if ap.get("IdentitySource") != [desc["identity_source"]]:
                err(f"authorizer IdentitySource is {ap.get('IdentitySource')!r}; the authorizer reads "
                    f"{desc['identity_source']!r}")
            fid = function_in(ap.get("AuthorizerUri"))
            if fid is None:
                err("the authorizer invokes no function defined in the template")
            elif mode_of(fid) != "authorizer":
                err(f"the authorizer invokes {fid}, whose WSGATE_HANDLER is {mode_of(fid)!r}, not 'authorizer'")
            else:
                invoked[fid] = "authorizer"

    # API Gateway may invoke each of those functions.
    perms = of_type("AWS::Lambda::Permission")
    for fid, how in invoked.items():
        ok = any(fid in refs(p["Properties"].get("FunctionName"))
                 and p["Properties"].get("Principal") == "apigateway.amazonaws.com"
                 and p["Properties"].get("Action") == "lambda:InvokeFunction"
                 and api_id in refs(p["Properties"].get("SourceArn"))
                 for p in perms.values())
        if not ok:
            err(f"no AWS::Lambda::Permission lets API Gateway ({api_id}) invoke {fid} ({how})")

    # Deployment and stage.
    deployments = of_type("AWS::ApiGatewayV2::Deployment")
    stages = of_type("AWS::ApiGatewayV2::Stage")
    if not deployments or not stages:
        err("no AWS::ApiGatewayV2::Deployment and Stage")
    else:
        for did, d in deployments.items():
            depends = d.get("DependsOn", [])
            depends = [depends] if isinstance(depends, str) else depends
            missing = [routes[k][0] for k in routes if routes[k][0] not in depends]
            if missing:
                err(f"deployment {did} does not depend on routes {missing} (it could deploy before them)")
        if not any(set(deployments) & refs(s["Properties"].get("DeploymentId")) for s in stages.values()):
            err("no stage uses the deployment")

    # The connection table, as the store uses it.
    tables = of_type("AWS::DynamoDB::Table")
    store_tables = set()
    for fid, p in functions.items():
        vars_ = p.get("Environment", {}).get("Variables", {})
        mode = vars_.get("WSGATE_HANDLER")
        spec = vars_.get("WSGATE_STORE")
        text = sub_text(spec) or (spec if isinstance(spec, str) else "")
        if mode in ("websocket", "broadcast"):
            m = re.match(r"dynamodb://\$\{([^}.]+)\}", text)
            if not m or m.group(1) not in tables:
                err(f"{fid}: WSGATE_STORE {spec!r} is not dynamodb://${{<a table of the template>}} "
                    "(each Lambda instance would have its own connections)")
                continue
            store_tables.add(m.group(1))
            crud = [pol for pol in p.get("Policies", []) if isinstance(pol, dict) and "DynamoDBCrudPolicy" in pol
                    and m.group(1) in refs(pol["DynamoDBCrudPolicy"])]
            if not crud:
                err(f"{fid}: no DynamoDBCrudPolicy on {m.group(1)}")
            endpoint = vars_.get("WEBSOCKET_API_ENDPOINT")
            if api_id not in refs(endpoint):
                err(f"{fid}: WEBSOCKET_API_ENDPOINT does not name {api_id}")
            manage = [st for pol in p.get("Policies", []) if isinstance(pol, dict)
                      for st in pol.get("Statement", [])
                      if st.get("Effect") == "Allow" and "execute-api:ManageConnections" in
                      (st.get("Action") if isinstance(st.get("Action"), list) else [st.get("Action")])
                      and api_id in refs(st.get("Resource"))]
            if not manage:
                err(f"{fid}: no execute-api:ManageConnections on {api_id}")
    if len(store_tables) > 1:
        err(f"the functions use different connection tables: {sorted(store_tables)}")
    want = desc["table"]
    for tid in store_tables:
        tp = tables[tid]["Properties"]
        key = lambda items, field: sorted((i["AttributeName"], i[field]) for i in items or [])
        if key(tp.get("KeySchema"), "KeyType") != key(want["KeySchema"], "KeyType"):
            err(f"{tid}: KeySchema {tp.get('KeySchema')} is not the store's {want['KeySchema']}")
        if key(tp.get("AttributeDefinitions"), "AttributeType") != key(want["AttributeDefinitions"], "AttributeType"):
            err(f"{tid}: AttributeDefinitions {tp.get('AttributeDefinitions')} are not the store's "
                f"{want['AttributeDefinitions']}")
        if tp.get("BillingMode") != want["BillingMode"]:
            err(f"{tid}: BillingMode is not {want['BillingMode']}")
        ttl = tp.get("TimeToLiveSpecification", {})
        if ttl.get("AttributeName") != want["TimeToLiveAttribute"] or ttl.get("Enabled") is not True:
            err(f"{tid}: TTL is {ttl}, the store writes {want['TimeToLiveAttribute']!r}")

    # The broadcast function reads a stream, reporting partial batch failures.
    for fid, p in functions.items():
        if mode_of(fid) != "broadcast":
            continue
        streams = [e["Properties"] for e in p.get("Events", {}).values() if e.get("Type") == "DynamoDB"]
        if not streams:
            err(f"{fid}: no DynamoDB stream event source")
        for sp in streams:
            if "ReportBatchItemFailures" not in sp.get("FunctionResponseTypes", []):
                err(f"{fid}: the stream event source lacks FunctionResponseTypes ReportBatchItemFailures")
            src = [r for r in refs(sp.get("Stream")) if r in tables]
            if len(src) != 1:
                err(f"{fid}: the stream is not a table of the template")
                continue
            if src[0] in store_tables:
                err(f"{fid}: reads the stream of the connection table {src[0]} (its own writes would come back)")
            view = tables[src[0]]["Properties"].get("StreamSpecification", {}).get("StreamViewType")
            if view != "NEW_AND_OLD_IMAGES":
                err(f"{fid}: {src[0]}'s StreamViewType is {view!r}, not NEW_AND_OLD_IMAGES")

    # Where to connect.
    if not any((sub_text(o.get("Value")) or "").startswith(f"wss://${{{api_id}}}.execute-api.")
               for o in tpl.get("Outputs", {}).values()):
        err("no output gives the wss:// URL of the API")
    return problems


# ---- self-test: broken copies must fail ----------------------------------------------------------
def first_function(tpl, mode):
    for fid, fn in tpl["Resources"].items():
        if fn.get("Type") == "AWS::Serverless::Function" and \
                fn["Properties"].get("Environment", {}).get("Variables", {}).get("WSGATE_HANDLER") == mode:
            return fn["Properties"]
    raise KeyError(mode)


def route(tpl, key):
    return next(r["Properties"] for r in tpl["Resources"].values()
                if r.get("Type") == "AWS::ApiGatewayV2::Route" and r["Properties"].get("RouteKey") == key)


def of(tpl, type_):
    return next(r["Properties"] for r in tpl["Resources"].values() if r.get("Type") == type_)


def connection_table(tpl):
    spec = sub_text(first_function(tpl, "websocket")["Environment"]["Variables"]["WSGATE_STORE"])
    return tpl["Resources"][re.match(r"dynamodb://\$\{([^}]+)\}", spec).group(1)]["Properties"]


def stream_source(tpl):
    return next(e["Properties"] for e in first_function(tpl, "broadcast")["Events"].values())


def drop_manage(tpl):
    fn = first_function(tpl, "broadcast")
    fn["Policies"] = [p for p in fn["Policies"] if "Statement" not in p]


def drop_permission(tpl, fid):
    tpl["Resources"] = {k: v for k, v in tpl["Resources"].items()
                        if not (v.get("Type") == "AWS::Lambda::Permission" and fid in refs(v["Properties"]))}


MUTATIONS = [
    ("$default goes to a function the template lacks",
     lambda t: route(t, "$default").update(Target={"Fn::Sub": "integrations/${Nowhere}"}), "route $default"),
    ("integration invokes an undefined function",
     lambda t: of(t, "AWS::ApiGatewayV2::Integration").update(
         IntegrationUri={"Fn::Sub": "arn:aws:apigateway:r:lambda:path/2015-03-31/functions/${Gone.Arn}/invocations"}),
     "invokes no function defined"),
    ("unknown handler mode", lambda t: first_function(t, "broadcast")["Environment"]["Variables"].update(
        WSGATE_HANDLER="broadcasts"), "is not a mode the binary serves"),
    ("routes go to the authorizer function", lambda t: of(t, "AWS::ApiGatewayV2::Integration").update(
        IntegrationUri={"Fn::Sub": "arn:x/functions/${AuthorizerFunction.Arn}/invocations"}), "not 'websocket'"),
    ("sort key is a number", lambda t: connection_table(t)["AttributeDefinitions"][1].update(AttributeType="N"),
     "AttributeDefinitions"),
    ("hash key renamed", lambda t: connection_table(t)["KeySchema"][0].update(AttributeName="connectionId"),
     "KeySchema"),
    ("TTL on another attribute", lambda t: connection_table(t)["TimeToLiveSpecification"].update(
        AttributeName="expiresAt"), "TTL"),
    ("TTL off", lambda t: connection_table(t)["TimeToLiveSpecification"].update(Enabled=False), "TTL"),
    ("identity source the authorizer does not read", lambda t: of(t, "AWS::ApiGatewayV2::Authorizer").update(
        IdentitySource=["route.request.header.Authorization"]), "IdentitySource"),
    ("no ReportBatchItemFailures", lambda t: stream_source(t).update(FunctionResponseTypes=[]),
     "ReportBatchItemFailures"),
    ("stream of the connection table", lambda t: stream_source(t).update(
        Stream={"Fn::GetAtt": ["ConnectionsTable", "StreamArn"]}), "connection table"),
    ("no ManageConnections", drop_manage, "ManageConnections"),
    ("no permission for the authorizer", lambda t: drop_permission(t, "AuthorizerFunction"), "invoke AuthorizerFunction"),
    ("in-memory store", lambda t: first_function(t, "websocket")["Environment"]["Variables"].update(
        WSGATE_STORE="memory"), "WSGATE_STORE"),
    ("routes by action", lambda t: of(t, "AWS::ApiGatewayV2::Api").update(
        RouteSelectionExpression="$request.body.action"), "RouteSelectionExpression"),
    ("not built by the Makefile", lambda t: t["Resources"]["BroadcastFunction"]["Metadata"].update(
        BuildMethod="go1.x"), "BuildMethod"),
    ("deployment before routes", lambda t: of(t, "AWS::ApiGatewayV2::Deployment") and
     next(r for r in t["Resources"].values() if r.get("Type") == "AWS::ApiGatewayV2::Deployment").update(
         DependsOn=["ConnectRoute"]), "does not depend on routes"),
    ("no wss:// output", lambda t: t.update(Outputs={}), "wss://"),
]


def self_test(tpl, desc, makefile_text, template_path, binary):
    failures = []
    for name, mutate, expected in MUTATIONS:
        broken = copy.deepcopy(tpl)
        mutate(broken)
        problems = check(broken, desc, makefile_text)
        if not any(expected in p for p in problems):
            failures.append(f"mutation '{name}' was not caught (wanted '{expected}'; got {problems})")
    # The same end to end: a textually broken copy, through the YAML loader and the exit status.
    with open(template_path) as f:
        text = f.read()
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "Makefile"), "w") as f:
            f.write(makefile_text)
        for old, new in [("AttributeName: ttl", "AttributeName: expires"),
                         ("WSGATE_HANDLER: authorizer", "WSGATE_HANDLER: auth")]:
            if old not in text:
                failures.append(f"self-test: {old!r} is not in the template")
                continue
            path = os.path.join(tmp, "template.yaml")
            with open(path, "w") as f:
                f.write(text.replace(old, new, 1))
            p = subprocess.run([sys.executable, __file__, "--binary", binary, path], capture_output=True, text=True)
            if p.returncode != 1:
                failures.append(f"copy with {new!r}: exit {p.returncode}, expected 1\n{p.stdout}{p.stderr}")
    return failures


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=True)
    ap.add_argument("--self-test", action="store_true")
    ap.add_argument("template")
    args = ap.parse_args()
    desc = json.loads(subprocess.run([args.binary, "--describe"], check=True, capture_output=True, text=True).stdout)
    tpl = load(args.template)
    makefile = os.path.join(os.path.dirname(os.path.abspath(args.template)), "Makefile")
    makefile_text = open(makefile).read() if os.path.exists(makefile) else ""
    problems = check(tpl, desc, makefile_text)
    for p in problems:
        print("template:", p)
    if problems:
        return 1
    print(f"{args.template}: routes, functions, table and permissions match the binary")
    if args.self_test:
        failures = self_test(tpl, desc, makefile_text, args.template, args.binary)
        for f in failures:
            print("self-test:", f)
        if failures:
            return 1
        print(f"self-test: {len(MUTATIONS) + 2} broken copies each caught")
    return 0


if __name__ == "__main__":
    sys.exit(main())
