package bench

import "fmt"

// notes say, in the report, how each figure was measured.
func notes(o Options) []string {
	out := []string{
		"find baselines: the real find(1), stdout to /dev/null or read by the bench; one warm-up run, then the best of --find-runs; the tree is counted with find first, so find and the agent both meet a warm cache.",
		"P1: wall time from starting fustor-agent (Fusion already up, view empty) until GetStats / reports N files; GetStats answers only once the first snapshot has ended, so this is snapshot walk + push + apply end to end. Divided by the find -printf time.",
		"A: the agent's walk time is the duration_ms of its 'snapshot sent' / 'audit sent' log lines. The first audit after the snapshot is full (empty mtime cache); the second walks the unchanged tree. Agent peak RSS: the larger of VmRSS sampled every 50 ms and the kernel's VmHWM (reset through /proc/PID/clear_refs between the snapshot and the audits).",
		"P6: the bytes Fusion read on its gRPC listener from agent start until the view is complete (its fustor_grpc_server_received_bytes_total; HTTP/2 framing, session creation and heartbeats included, and the bench's own GetStats polls every 5 ms, under 1 %) divided by the rows of the snapshot (files + directories). The agent connects to Fusion directly.",
		"P3: Fusion's /debug/memstats?gc=1 (after a forced GC that returns the freed pages to the system: debug.FreeOSMemory) once the view holds N files; per file = heap_inuse / N (and RSS / N); the 'net' figures subtract the same figures read before the agent started (empty view).",
		fmt.Sprintf("P4: %d goroutines, each with its own gRPC connection (like separate clients), run each query kind twice. Back to back: all at once, each sending its next query as soon as the last returns — a warm-up of a tenth, then %d measured queries in all; this gives the throughput, and its latency is mostly the queue the clients keep full (%d in flight on a machine whose cores the bench shares with Fusion). Paced (the p50/p99 judged against the targets): each client sends on its own Poisson schedule, all together at %.0f%% of that throughput, for %s or until %d queries (at most %s; at least %d a client); latency runs from sending a query to its answer (the bench's own timer wake-up is reported apart, as M, with the smallest call Fusion answers, ListViews, from one client alone: the floor under every query on this machine). ls lists sub_0 of a random submission (250 entries); stats of a random submission (1,000 files) and of /; find name %q under / with limit %d (the complete answer, like find); glob %q under / with Fusion's default limit %d, and find(1) is stopped at its %d-th match. Speed-up = find time ÷ paced Fusion p50 (÷ p99 shown alongside).", o.Clients, o.Queries, o.Clients, 100*o.Load, o.PacedFor, pacedQueries, pacedMaxFor, pacedMinPerClient, findName, nameLimit, findGlob, globLimit, globLimit),
		fmt.Sprintf("P5: %d files written one at a time (create, write 1-1024 bytes, close) into %s/ at the tree root, watched by the agent; after each close, Stat is polled in a tight loop over one gRPC connection until it shows the file with the right size; latency = visible − close returned. The directory is removed afterwards.", o.RealtimeFiles, RealtimeDir),
		fmt.Sprintf("P2: a second Fusion process, one session speaking the push protocol (SnapshotStart, then %d-row FsBatch batches from sdk/fsbatch, up to %d unacknowledged), for %s; rows cycle over the N paths of the layout (the view grows to N files, then is updated in place). Fusion acks a batch once applied: rate = rows acked ÷ (last ack − first send). Client and server share the machine.", ingestBatch, ingestInFlight, o.IngestDuration),
	}
	if o.Scale > 0 {
		out = append(out, fmt.Sprintf("S (scale): a synthetic tree of the layout (%d submissions of %d files per million, names from a seeded generator, nothing on disk), pushed as one agent's snapshot over one push stream (%d-row batches, %d in flight) into a Fusion of its own, at %s and at %s paths; heap and RSS read as P3 (after a forced GC) and divided by files + directories; the queries are P4's lookups (not the complete-answer finds, which grow with the tree), paced as P4 without the find baselines; GC pauses from Fusion's runtime.MemStats.PauseNs between the queries' start and end; the checkpoint written by AdminService.Checkpoint (its duration_ms) and read by a new Fusion at its start (the took of its 'view restored from its checkpoint' log line).",
			1_000_000/FilesPerSubm, FilesPerSubm, ingestBatch, ingestInFlight, commas(ScaleRef), commas(int64(o.Scale))))
	}
	if o.Forest > 0 {
		out = append(out, forestNotes(o)...)
	}
	return out
}
