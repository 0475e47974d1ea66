import textwrap

from svcsim.k8s import Manifests, load_manifest_text


def load(text: str, source: str = "m.yaml") -> Manifests:
    """Load a dedented manifest text."""
    return load_manifest_text(textwrap.dedent(text).lstrip("\n"), source)
