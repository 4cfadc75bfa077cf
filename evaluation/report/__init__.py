"""The run report: it reads only files that other stages wrote (logs, metrics JSON, manifests, slot files) and
writes one self-contained HTML page and a Markdown summary. Imports data (file IO) and nothing that computes."""
