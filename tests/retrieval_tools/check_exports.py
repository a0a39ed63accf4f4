"""Reads sessionstore's retrieval exports back with real evaluation tools.

Usage: python check_exports.py ROOT
ROOT holds one export per format, from the same store and filters:
ROOT/jsonl, ROOT/trec, ROOT/beir, ROOT/ragas. The native events.jsonl is
the truth the other formats are checked against:

- TREC: ir_measures reads run.trec, ir_datasets reads topics.tsv; the run
  is scored against qrels written here (each query's first candidate
  relevant), so P@1 and RR must be exactly 1 if the tools rank the
  candidates as the store did.
- BEIR: beir's GenericDataLoader reads queries.jsonl and corpus.jsonl
  (with qrels written here, as it requires).
- RAGAS: ragas reads ragas.jsonl into an EvaluationDataset and scores
  IDBasedContextPrecision (no model needed) against the same references.

Exits non-zero with a message naming what differs; prints a JSON summary.
"""

import json
import os
import shutil
import sys
import tempfile
import warnings

warnings.simplefilter("ignore")


def fail(what):
    print(f"check_exports: {what}", file=sys.stderr)
    sys.exit(1)


def expect(condition, what):
    if not condition:
        fail(what)


def one_line(text):
    return "".join(" " if (ord(c) < 32 or 127 <= ord(c) < 160) else c for c in text)


def read_events(root):
    with open(os.path.join(root, "jsonl", "events.jsonl"), encoding="utf-8") as f:
        events = [json.loads(line) for line in f]
    for event in events:
        expect(event["schema"] == "sessionstore.retrieval/1", f"schema {event['schema']}")
        event["qid"] = str(event["message_id"])
        ids = []
        for candidate in event["candidates"]:
            record_id = str(candidate["record_id"])
            if record_id not in ids:
                ids.append(record_id)
        event["ranked"] = ids
    expect(events, "events.jsonl holds no event")
    return events


def check_manifests(root, events):
    for fmt in ("jsonl", "trec", "beir", "ragas"):
        with open(os.path.join(root, fmt, "manifest.json"), encoding="utf-8") as f:
            manifest = json.load(f)
        expect(manifest["format"] == fmt, f"{fmt}/manifest.json names format {manifest['format']}")
        expect(manifest["schema"] == "sessionstore.retrieval/1", f"{fmt}/manifest.json schema")
        expect(
            manifest["counts"]["events"] == len(events),
            f"{fmt}/manifest.json counts {manifest['counts']['events']} events, events.jsonl {len(events)}",
        )


def check_trec(root, events, qrels):
    import ir_measures
    from ir_measures import P, RR, nDCG
    from ir_datasets.formats import TsvQueries
    from ir_datasets.util import LocalDownload

    run = list(ir_measures.read_trec_run(os.path.join(root, "trec", "run.trec")))
    by_query = {}
    for doc in run:
        by_query.setdefault(doc.query_id, []).append((doc.score, doc.doc_id))
    for event in events:
        ranked = [doc for _, doc in sorted(by_query.get(event["qid"], []), key=lambda d: -d[0])]
        expect(
            ranked == event["ranked"],
            f"run.trec ranks query {event['qid']} as {ranked[:5]}..., the store as {event['ranked'][:5]}...",
        )
    expect(len(by_query) == sum(1 for e in events if e["ranked"]), "run.trec has queries without candidates")

    topics = list(TsvQueries(LocalDownload(os.path.join(root, "trec", "topics.tsv"))).queries_iter())
    expect(len(topics) == len(events), f"topics.tsv has {len(topics)} topics, {len(events)} events")
    for topic, event in zip(topics, events):
        expect(topic.query_id == event["qid"], f"topic {topic.query_id} where {event['qid']} was due")
        expect(topic.text == one_line(event["query"]), f"topic {topic.query_id} text differs")

    measures = ir_measures.calc_aggregate([P @ 1, RR, nDCG @ 10], qrels, run)
    expect(measures[P @ 1] == 1.0, f"P@1 is {measures[P @ 1]}, not 1")
    expect(measures[RR] == 1.0, f"RR is {measures[RR]}, not 1")
    return {"run_lines": len(run), "topics": len(topics), **{str(k): v for k, v in measures.items()}}


def check_beir(root, events, qrels):
    from beir.datasets.data_loader import GenericDataLoader

    folder = tempfile.mkdtemp()
    try:
        for name in ("queries.jsonl", "corpus.jsonl"):
            shutil.copy(os.path.join(root, "beir", name), folder)
        os.mkdir(os.path.join(folder, "qrels"))
        with open(os.path.join(folder, "qrels", "test.tsv"), "w", encoding="utf-8") as f:
            f.write("query-id\tcorpus-id\tscore\n")
            for qrel in qrels:
                f.write(f"{qrel.query_id}\t{qrel.doc_id}\t{qrel.relevance}\n")
        corpus, queries, loaded_qrels = GenericDataLoader(data_folder=folder).load(split="test")
    finally:
        shutil.rmtree(folder)
    records = {doc for event in events for doc in event["ranked"]}
    expect(set(corpus) == records, f"corpus.jsonl holds {len(corpus)} records, the events {len(records)}")
    with open(os.path.join(root, "beir", "corpus.jsonl"), encoding="utf-8") as f:
        lines = sum(1 for _ in f)
    expect(lines == len(records), f"corpus.jsonl repeats records: {lines} lines, {len(records)} records")
    for event in events:
        if event["ranked"]:
            expect(queries[event["qid"]] == event["query"], f"BEIR query {event['qid']} text differs")
    expect(len(loaded_qrels) == len(qrels), "BEIR qrels")
    return {"corpus": len(corpus), "queries": len(queries)}


def check_ragas(root, events, qrels):
    from ragas import EvaluationDataset
    from ragas.metrics import IDBasedContextPrecision

    dataset = EvaluationDataset.from_jsonl(os.path.join(root, "ragas", "ragas.jsonl"))
    expect(len(dataset) == len(events), f"ragas.jsonl has {len(dataset)} samples, {len(events)} events")
    relevant = {qrel.query_id: qrel.doc_id for qrel in qrels}
    metric = IDBasedContextPrecision()
    scored = 0
    for sample, event in zip(dataset.samples, events):
        expect(sample.user_input == event["query"], f"ragas user_input of {event['qid']} differs")
        expect(sample.response == event["reply"], f"ragas response of {event['qid']} differs")
        ids = [str(c["record_id"]) for c in event["candidates"]]
        expect(sample.retrieved_context_ids == ids, f"ragas ids of {event['qid']} differ")
        expect(len(sample.retrieved_contexts) == len(ids), f"ragas contexts of {event['qid']}")
        if event["qid"] in relevant:
            sample.reference_context_ids = [relevant[event["qid"]]]
            precision = metric.single_turn_score(sample)
            # ragas counts distinct ids: a repeated record counts once.
            distinct = len(set(ids))
            expect(
                abs(precision - 1 / distinct) < 1e-9,
                f"IDBasedContextPrecision of {event['qid']} is {precision}, not 1/{distinct}",
            )
            scored += 1
    return {"samples": len(dataset), "scored": scored}


def main():
    if len(sys.argv) != 2:
        fail("usage: check_exports.py ROOT")
    root = sys.argv[1]
    import ir_measures

    events = read_events(root)
    check_manifests(root, events)
    qrels = [ir_measures.Qrel(e["qid"], e["ranked"][0], 1) for e in events if e["ranked"]]
    summary = {
        "events": len(events),
        "trec": check_trec(root, events, qrels),
        "beir": check_beir(root, events, qrels),
        "ragas": check_ragas(root, events, qrels),
    }
    print(json.dumps(summary, sort_keys=True))


if __name__ == "__main__":
    main()
