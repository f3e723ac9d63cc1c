"""Check terraform/*.tf against the real provider schemas, without `terraform init`.

The schemas come from the prebuilt cdktf provider packages (``make provider-schema`` fetches them,
pinned, into build/provider-schema/<name>@<version>/): each is generated from one provider release
(package.json ``cdktf.provider``) and its ``.jsii`` type assembly holds, for every resource and
data source, a ``<Name>Config`` interface whose properties are the arguments (``optional`` unless
required) and whose struct-typed properties are the nested blocks, recursively. Each property's
registry link (``…/docs/resources/storage_bucket#location StorageBucket#location``) names its
terraform argument. The assembly is ~100 MB; :func:`load` reduces it once to a small JSON next to it.

:func:`check_documents` walks the python-hcl2 parse of a module and reports every argument or block
a resource/data/provider block uses that its schema does not know, every required one missing, and
every block written as an attribute or the other way round.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCHEMA_DIR = ROOT / "build" / "provider-schema"
COMPACT_FORMAT = 1

# Meta-arguments terraform itself accepts in every resource / data block.
RESOURCE_META = {"count", "for_each", "depends_on", "provider", "lifecycle", "provisioner", "connection"}
DATA_META = {"count", "for_each", "depends_on", "provider", "lifecycle"}
LIFECYCLE_ARGS = {
    "create_before_destroy",
    "prevent_destroy",
    "ignore_changes",
    "replace_triggered_by",
    "precondition",
    "postcondition",
}
DYNAMIC_ARGS = {"for_each", "iterator", "labels", "content"}
PROVIDER_META = {"alias"}

_LINK = re.compile(r"/docs/(resources|data-sources)/(\w+)\s+(google_\w+|archive_\w+|\w+)\}")
_ARG_ANCHOR = re.compile(r"#(\w+) \w+#\w+\}")


def _unquote(value):
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


# --- the schema -------------------------------------------------------------------------------


@dataclass
class Schema:
    package: str  # e.g. "@cdktf/provider-google@16.12.1"
    provider: str  # e.g. "registry.terraform.io/hashicorp/google"
    provider_version: str  # e.g. "6.50.0"
    types: dict  # type key -> {"attrs": {name: required}, "blocks": {name: {"required", "type", "block"}}}
    resources: dict  # "google_storage_bucket" -> type key of its config
    data: dict  # "google_storage_bucket" -> type key of its config
    provider_config: str | None

    @property
    def local_name(self) -> str:
        """The provider's local name in required_providers: "google", "google-beta", "archive"."""
        return self.provider.rsplit("/", 1)[-1]


def _struct_fqns(type_ref, structs) -> list[str]:
    """The assembly's struct types a property type refers to (directly, in a list, in a union)."""
    out = []
    if isinstance(type_ref, dict):
        fqn = type_ref.get("fqn")
        if fqn in structs:
            out.append(fqn)
        for value in type_ref.values():
            if isinstance(value, (dict, list)):
                out.extend(_struct_fqns(value, structs))
    elif isinstance(type_ref, list):
        for item in type_ref:
            out.extend(_struct_fqns(item, structs))
    return out


def _compact(jsii: dict, package: dict) -> dict:
    types = jsii["types"]
    structs = {fqn: t for fqn, t in types.items() if t.get("kind") == "interface" and t.get("datatype")}

    def properties(fqn, seen=()):
        t = structs[fqn]
        props = list(t.get("properties", []))
        for parent in t.get("interfaces", []):
            if parent in structs and parent not in seen:
                props.extend(properties(parent, (*seen, fqn)))
        return props

    compact_types = {}
    for fqn in structs:
        attrs, blocks = {}, {}
        for prop in properties(fqn):
            docs = prop.get("docs", {})
            anchor = _ARG_ANCHOR.search(json.dumps(docs))
            name = anchor.group(1) if anchor else _snake(prop["name"])
            required = not prop.get("optional", False)
            nested = _struct_fqns(prop["type"], structs)
            if nested:
                is_block = docs.get("summary", "").rstrip().endswith("block.")
                blocks[name] = {"required": required, "type": nested[0], "block": is_block}
            else:
                attrs[name] = required
        compact_types[fqn] = {"attrs": attrs, "blocks": blocks}

    resources, data, provider_config = {}, {}, None
    for fqn, t in types.items():
        if t.get("kind") != "class":
            continue
        params = (t.get("initializer") or {}).get("parameters", [])
        config = next((p["type"].get("fqn") for p in params if p["name"] == "config"), None)
        if config not in structs:
            continue
        if t.get("base") == "cdktf.TerraformProvider":
            provider_config = config
            continue
        m = _LINK.search(t.get("docs", {}).get("summary", ""))
        if not m:
            continue
        (resources if m.group(1) == "resources" else data)[m.group(3)] = config

    provider = package["cdktf"]["provider"]
    return {
        "format": COMPACT_FORMAT,
        "package": f"{package['name']}@{package['version']}",
        "provider": provider["name"],
        "provider_version": provider["version"],
        "types": compact_types,
        "resources": resources,
        "data": data,
        "provider_config": provider_config,
    }


def load(pkg_dir: Path) -> Schema:
    """The schema of one fetched cdktf provider package (build/provider-schema/<name>@<version>)."""
    cache = pkg_dir / "schema.compact.json"
    jsii_path = pkg_dir / ".jsii"
    compact = None
    if cache.is_file():
        compact = json.loads(cache.read_text())
        if compact.get("format") != COMPACT_FORMAT:
            compact = None
    if compact is None:
        compact = _compact(json.loads(jsii_path.read_text()), json.loads((pkg_dir / "package.json").read_text()))
        tmp = cache.with_suffix(".tmp")
        tmp.write_text(json.dumps(compact))
        tmp.replace(cache)
    return Schema(**{k: v for k, v in compact.items() if k != "format"})


def fetched_packages(schema_dir: Path = SCHEMA_DIR) -> list[Path]:
    return sorted(p for p in schema_dir.glob("*@*") if (p / ".jsii").is_file() and (p / "package.json").is_file())


# --- checking a parsed module -----------------------------------------------------------------


def _parser_key(key: str) -> bool:
    """python-hcl2's own markers (__is_block__, __comments__, ...), not terraform arguments."""
    return key.startswith("__") and key.endswith("__")


def _is_block_list(value) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) and v.get("__is_block__") for v in value)


def check_body(schema: Schema, type_key: str, body: dict, where: str, meta: set[str] = frozenset()) -> list[str]:
    """Errors of one block body against the schema type ``type_key`` (recursively)."""
    spec = schema.types[type_key]
    attrs, blocks = spec["attrs"], spec["blocks"]
    errors, present = [], set()
    for key, value in body.items():
        if _parser_key(key):
            continue
        if key in meta:
            if key == "lifecycle" and _is_block_list(value):
                for lc in value:
                    unknown = {k for k in lc if not _parser_key(k)} - LIFECYCLE_ARGS
                    if unknown:
                        errors.append(f"{where}: lifecycle has unknown argument(s) {sorted(unknown)}")
            continue
        if key == "dynamic" and isinstance(value, list) and all(isinstance(v, dict) for v in value):
            # [{'"<name>"': {for_each, content: [...], __is_block__}}]: the label is the block name.
            for dyn in value:
                for label, dyn_body in dyn.items():
                    if _parser_key(label):
                        continue
                    name = _unquote(label)
                    here = f'{where}.dynamic "{name}"'
                    if name not in blocks:
                        errors.append(f"{here}: no block {name!r} in {schema.package} ({_known(spec)})")
                        continue
                    present.add(name)
                    unknown = {k for k in dyn_body if not _parser_key(k)} - DYNAMIC_ARGS
                    if unknown:
                        errors.append(f"{here}: unknown argument(s) {sorted(unknown)} of a dynamic block")
                    contents = dyn_body.get("content")
                    if not _is_block_list(contents):
                        errors.append(f"{here}: a dynamic block needs a content block")
                        continue
                    for content in contents:
                        errors += check_body(schema, blocks[name]["type"], content, f"{here}.content")
            continue
        present.add(key)
        if key in blocks:
            nested = blocks[key]
            if _is_block_list(value):
                if not nested["block"]:
                    errors.append(f"{where}.{key}: is an attribute (write {key} = {{...}}), not a block")
                    continue
                for item in value:
                    errors += check_body(schema, nested["type"], item, f"{where}.{key}")
            elif nested["block"]:
                errors.append(f"{where}.{key}: is a block (write {key} {{ ... }}), not an attribute")
            continue
        if key in attrs:
            if _is_block_list(value):
                errors.append(f"{where}.{key}: is an attribute (write {key} = ...), not a block")
            continue
        errors.append(f"{where}: unknown argument or block {key!r} in {schema.package} ({_known(spec)})")
    missing = sorted(
        [a for a, required in attrs.items() if required and a not in present]
        + [b for b, spec_b in blocks.items() if spec_b["required"] and b not in present]
    )
    if missing:
        errors.append(f"{where}: missing required {missing}")
    return errors


def _known(spec: dict) -> str:
    names = sorted(spec["attrs"]) + sorted(f"{b} {{}}" for b in spec["blocks"])
    return "known: " + ", ".join(names)


def _provider_of(rtype: str, body: dict) -> str:
    explicit = body.get("provider")
    if explicit:
        return _unquote(str(explicit)).removeprefix("${").removesuffix("}").split(".", 1)[0]
    return rtype.split("_", 1)[0]


def check_documents(docs: dict[str, dict], schemas: dict[str, Schema]) -> list[str]:
    """Errors of every resource, data and provider block of parsed .tf files (name -> hcl2 dict).
    ``schemas`` maps a provider's local name ("google", "google-beta", "archive") to its schema."""
    errors = []
    for fname, doc in docs.items():
        for kind, meta in (("resource", RESOURCE_META), ("data", DATA_META)):
            for block in doc.get(kind, []):
                for rtype, named in block.items():
                    rtype = _unquote(rtype)
                    for name, body in named.items():
                        where = f"{fname}: {kind} {rtype}.{_unquote(name)}"
                        provider = _provider_of(rtype, body)
                        schema = schemas.get(provider)
                        if schema is None:
                            errors.append(f"{where}: no schema for provider {provider!r} (have {sorted(schemas)})")
                            continue
                        table = schema.resources if kind == "resource" else schema.data
                        if rtype not in table:
                            errors.append(
                                f"{where}: {schema.package} (provider {schema.local_name} {schema.provider_version}) has no {kind} {rtype}"
                            )
                            continue
                        errors += check_body(schema, table[rtype], body, where, meta)
        for block in doc.get("provider", []):
            for pname, body in block.items():
                pname = _unquote(pname)
                where = f"{fname}: provider {pname}"
                schema = schemas.get(pname)
                if schema is None or schema.provider_config is None:
                    errors.append(f"{where}: no schema for provider {pname!r} (have {sorted(schemas)})")
                    continue
                errors += check_body(schema, schema.provider_config, body, where, PROVIDER_META)
    return errors


if __name__ == "__main__":  # `make provider-schema`: reduce each fetched package once, at fetch time
    import sys

    for arg in sys.argv[1:]:
        schema = load(Path(arg))
        print(
            f"{schema.package}: {schema.provider} {schema.provider_version}, {len(schema.resources)} resources, {len(schema.data)} data sources"
        )
