"""Print an executed notebook's cells and their outputs as plain text."""

import json
import sys
import textwrap


def show_output(out):
    kind = out.get("output_type")
    if kind == "stream":
        return "".join(out.get("text", ""))
    if kind == "error":
        return f"{out.get('ename')}: {out.get('evalue')}"
    data = out.get("data", {})
    if "text/plain" in data:
        text = "".join(data["text/plain"])
    else:
        text = ""
    extra = [m for m in data if m != "text/plain"]
    if extra:
        text += ("\n" if text else "") + "[also " + ", ".join(extra) + "]"
    if kind == "execute_result":
        text = f"Out[{out.get('execution_count')}]: " + text
    return text


def main(path):
    with open(path, encoding="utf-8") as f:
        nb = json.load(f)
    print(f"# {path}")
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        source = "".join(cell["source"])
        print(f"\nIn [{cell.get('execution_count')}]:")
        print(textwrap.indent(source, "    "))
        for out in cell.get("outputs", []):
            print(textwrap.indent(show_output(out).rstrip("\n"), "  | "))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
