#!/usr/bin/env python3
"""Counts the public API of the `wasmq` library: every item a program that
depends on it can name, from rustdoc's JSON output.

    RUSTC_BOOTSTRAP=1 cargo rustdoc -p wasmq --lib [--no-default-features] -- \
        -Z unstable-options --output-format json
    python3 bench/public-api.py target/doc/wasmq.json [--list]

What counts, walking from the crate root through public modules and
re-exports (each item once, however many paths reach it): modules, structs,
enums, traits, functions, constants, statics, type aliases and macros; the
public fields of structs, the variants of enums; the public methods and
associated items of their inherent impls, and the methods a trait declares.
Trait implementations (Clone, Debug, ...) and items hidden from the docs
(`#[doc(hidden)]`) are left out.
"""

import json
import sys


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    doc = json.load(open(sys.argv[1]))
    index = doc["index"]
    seen = set()
    counted = []

    def hidden(item):
        return any("doc(hidden)" in str(attr) for attr in item.get("attrs", []))

    def visit(item_id, path):
        item = index.get(str(item_id))
        if item is None or hidden(item):
            return
        inner = item["inner"]
        kind = next(iter(inner))
        if kind == "use":
            target = inner["use"].get("id")
            if target is not None and not inner["use"].get("is_glob"):
                visit(target, path[:-1] + [inner["use"]["name"]])
            return
        if item.get("visibility") not in ("public", "default"):
            return
        if item_id in seen:
            return
        seen.add(item_id)
        name = item.get("name") or ""
        here = path if path and path[-1] == name else path + [name]
        counted.append((kind, "::".join(here)))
        body = inner[kind]
        if kind == "module":
            for child in body["items"]:
                child_item = index.get(str(child))
                child_name = child_item.get("name") if child_item else None
                visit(child, here + [child_name or ""])
        elif kind in ("struct", "enum", "union"):
            if kind == "struct":
                fields = body.get("kind", {})
                plain = fields.get("plain", {}) if isinstance(fields, dict) else {}
                for field in plain.get("fields", []):
                    visit_member(field, here)
                for field in (fields.get("tuple") or []) if isinstance(fields, dict) else []:
                    if field is not None:
                        visit_member(field, here)
            if kind == "enum":
                for variant in body.get("variants", []):
                    visit_member(variant, here)
            for impl_id in body.get("impls", []):
                impl = index.get(str(impl_id), {}).get("inner", {}).get("impl")
                if impl is None or impl.get("trait") is not None or impl.get("is_synthetic"):
                    continue
                for member in impl.get("items", []):
                    visit_member(member, here)
        elif kind == "trait":
            for member in body.get("items", []):
                visit_member(member, here)

    def visit_member(member_id, path):
        item = index.get(str(member_id))
        if item is None or hidden(item) or member_id in seen:
            return
        kind = next(iter(item["inner"]))
        public = item.get("visibility") in ("public", "default")
        if kind != "variant" and not public:
            return
        seen.add(member_id)
        counted.append((kind, "::".join(path + [item.get("name") or "?"])))

    root = doc["root"]
    visit(root, [index[str(root)]["name"]])
    if "--list" in sys.argv:
        for kind, path in sorted(counted, key=lambda entry: entry[1]):
            print(f"{kind:12} {path}")
    by_kind = {}
    for kind, _ in counted:
        by_kind[kind] = by_kind.get(kind, 0) + 1
    print(json.dumps({"public_items": len(counted), "by_kind": by_kind}, sort_keys=True))


if __name__ == "__main__":
    main()
