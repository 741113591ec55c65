"""`einsynth demo --quick` runs the whole chain: ILP map, simulate, RTL check, cascade check."""
from explore.demo import llama_projections, run_demo


def test_llama_projections_shapes():
    layers = dict((n, (m, k, nn)) for n, m, k, nn in llama_projections("llama-2-7b", 16))
    assert layers["q_proj"] == (16, 4096, 4096)
    assert layers["down_proj"] == (16, 11008, 4096)
    assert len(layers) == 7


def test_demo_quick_end_to_end():
    lines = []
    assert run_demo(quick=True, out=lines.append) == 0
    text = "\n".join(lines)
    assert "bit-exact against the golden model" in text
    assert "LUT PE golden model == interpreter" in text
    total = [l for l in lines if l.startswith("=> ")][0]
    assert " ms and " in total and "mJ per layer" in total
