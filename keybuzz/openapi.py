"""What the OpenAPI schema says beyond what drf-spectacular infers (SPECTACULAR_SETTINGS hooks).

- Path ids use the `<id:…>` converter: an integer from 1 to 2^63-1 (a bigint), nothing else.
- Request bodies take only the fields they list (keybuzz.serializers.InputSerializer refuses the
  others): `additionalProperties: false` on every request component.
- Strings sent to the API may not hold NUL characters (PostgreSQL text cannot store them; DRF
  refuses them with 400 invalid_input): every request string without a stricter rule says so.
"""

from __future__ import annotations

from typing import Any

NO_NUL = "^[^\\u0000]*$"
MAX_ID = 2**63 - 1


def _strings(schema: dict[str, Any]) -> None:
    if schema.get("type") == "string" and not ({"pattern", "format", "enum"} & schema.keys()):
        schema["pattern"] = NO_NUL
    for child in (schema.get("properties") or {}).values():
        _strings(child)
    if isinstance(schema.get("items"), dict):
        _strings(schema["items"])


def document_constraints(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    for name, component in result.get("components", {}).get("schemas", {}).items():
        if name.endswith("Request"):  # COMPONENT_SPLIT_REQUEST: what clients send
            _strings(component)
            if component.get("type") == "object":
                component["additionalProperties"] = False
    for path in result.get("paths", {}).values():
        for operation in path.values():
            for parameter in operation.get("parameters", []):
                schema = parameter.get("schema", {})
                if parameter.get("in") == "path" and schema.get("type") == "integer":
                    schema.update(minimum=1, maximum=MAX_ID)
                elif parameter.get("in") == "query":
                    _strings(schema)
    return result
