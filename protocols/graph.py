"""The checked flow graph shared by episode protocols (phases) and round-level programs (stages).

Nodes are the steps a definition names, plus ``<start>`` and ``<end>``; an edge says a step may
lead to another. A definition is refused before anything runs if it names a step it lacks, has a
step that cannot be reached from the start, or a step from which the end cannot be reached.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import networkx as nx

START, END = "<start>", "<end>"


def flow_graph(first: Sequence[str], then: Mapping[str, Sequence[str]], labels: Mapping[str, str]) -> nx.DiGraph:
    graph = nx.DiGraph()
    graph.add_nodes_from([START, END])
    for node in then:
        graph.add_node(node, label=labels.get(node, ""))
    graph.add_edges_from((START, node) for node in first)
    for node, targets in then.items():
        graph.add_edges_from((node, target) for target in targets)
    return graph


def check_flow(kind: str, where: str, first: Sequence[str], then: Mapping[str, Sequence[str]],
               graph: nx.DiGraph, error: type[Exception]) -> None:
    """Raise ``error`` naming the first thing that would let a run get stuck or go astray; ``where``
    names the definition, e.g. "protocol 'debate'"."""
    known = set(then) | {END}
    if not first:
        raise error(f"{where} names no first {kind}")
    for source, targets in [(START, first)] + list(then.items()):
        for target in targets:
            if target not in known:
                raise error(f"{where}: {kind} {source!r} leads to unknown {kind} {target!r}")
    unreachable = sorted(set(then) - nx.descendants(graph, START))
    if unreachable:
        raise error(f"{where}: {kind}(s) {', '.join(unreachable)} cannot be reached from the start")
    stuck = sorted(set(then) - nx.ancestors(graph, END))
    if stuck:
        raise error(f"{where}: from {kind}(s) {', '.join(stuck)} the end can never be reached")


def check_edge(kind: str, where: str, graph: nx.DiGraph, source: str, target: str, error: type[Exception]) -> None:
    if not graph.has_edge(source, target):
        allowed = ", ".join(sorted(graph.successors(source))) if source in graph else "none"
        raise error(f"{where}: {kind} {source!r} went to {target!r}; allowed: {allowed}")


def draw(graph: nx.DiGraph, title: str, path: str) -> str:
    """Write the graph as a picture (PNG/SVG by extension); returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layout = nx.spring_layout(graph, seed=0)
    labels = {n: n if n in (START, END) else f"{n}\n({graph.nodes[n]['label']})" if graph.nodes[n]["label"] else n
              for n in graph}
    colors = ["#dddddd" if n in (START, END) else "#a6cee3" for n in graph]
    fig, axis = plt.subplots(figsize=(7, 5))
    nx.draw_networkx(graph, layout, ax=axis, labels=labels, node_color=colors, node_size=2600,
                     font_size=8, arrowsize=16, connectionstyle="arc3,rad=0.12")
    axis.set_title(title)
    axis.axis("off")
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path
