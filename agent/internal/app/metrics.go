package app

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
	"github.com/fustor/fustor/sdk/metrics"
)

// sourceMetric is how one key of a source's Counters (the figures its heartbeat reports) is
// exposed. scale converts the counter's unit to the metric's base unit.
type sourceMetric struct {
	desc  *prometheus.Desc
	typ   prometheus.ValueType
	scale float64
}

// collector reads the agent's pipes, sources and buses at scrape time, the same figures the
// heartbeats carry, so they cost nothing between scrapes and are never out of date.
type collector struct {
	a *Agent

	pipeInfo, sessionUp, leader, sessions, failures, rowsSent *prometheus.Desc
	snapshots, audits, recoveryAudits, stuck                  *prometheus.Desc
	snapshotRunning, auditRunning                             *prometheus.Desc
	committed, realtime, skipped                              *prometheus.Desc
	stateSaves, stateSaveFailures, stateRefused, stateRestore *prometheus.Desc
	lastAuditDirs, castFailures, rowsDropped, rowsOverBounds  *prometheus.Desc
	busPublished, busRejected, busLost, busSplits, busMerges  *prometheus.Desc
	busLanes, busSubscribers                                  *prometheus.Desc
	panics, reloadOK, reloadTime, reloads                     *prometheus.Desc
	bySourceKey                                               map[string]sourceMetric
}

// skippedPrefix marks the Counters keys of entries skipped, by reason (skipped_<reason>).
const skippedPrefix = "skipped_"

func newCollector(a *Agent) *collector {
	pipe, src := []string{"pipe"}, []string{"source"}
	d := func(name, help string, labels []string) *prometheus.Desc {
		return prometheus.NewDesc("fustor_agent_"+name, help, labels, nil)
	}
	counter := func(name, help string) sourceMetric {
		return sourceMetric{d("source_"+name, help, src), prometheus.CounterValue, 1}
	}
	gauge := func(name, help string) sourceMetric {
		return sourceMetric{d("source_"+name, help, src), prometheus.GaugeValue, 1}
	}
	drift := gauge("clock_drift_seconds", "Estimated file-system clock minus agent clock, corrected in event indexes.")
	drift.scale = 1e-3
	return &collector{a: a,
		pipeInfo:          d("pipe_info", "Always 1; names the source the pipe reads.", []string{"pipe", "source"}),
		sessionUp:         d("pipe_session_up", "1 while the pipe holds a session with Fusion.", pipe),
		leader:            d("pipe_leader", "1 while the pipe's session is its view's leader (it snapshots and audits).", pipe),
		sessions:          d("pipe_sessions_total", "Sessions the pipe created.", pipe),
		failures:          d("pipe_session_failures_total", "Sessions that could not be created or ended in an error (each is followed by a backoff).", pipe),
		rowsSent:          d("pipe_rows_sent_total", "Rows the pipe pushed to Fusion: snapshot, audit, realtime and on-demand.", pipe),
		snapshots:         d("pipe_snapshots_total", "Snapshots the pipe started.", pipe),
		audits:            d("pipe_audits_total", "Audits the pipe completed.", pipe),
		recoveryAudits:    d("pipe_recovery_audits_total", "Deep audits the pipe completed to repair a known loss of realtime events (queue overflow); counted in audits too.", pipe),
		stuck:             d("pipe_stuck_restarts_total", "Snapshots and audits restarted for making no progress.", pipe),
		snapshotRunning:   d("pipe_snapshot_running", "1 while a snapshot walk runs.", pipe),
		auditRunning:      d("pipe_audit_running", "1 while an audit walk runs.", pipe),
		committed:         d("pipe_committed_index", "Highest event index Fusion reported applied (ms on the event clock).", pipe),
		stateSaves:        d("pipe_audit_state_saves_total", "Saves of the pipe's audit cache to state_dir.", pipe),
		stateSaveFailures: d("pipe_audit_state_save_failures_total", "Saves of the pipe's audit cache that failed (the previous file stays).", pipe),
		stateRefused:      d("pipe_audit_state_refused_total", "Saved audit caches refused at start (corrupt, truncated, another format version): moved aside, the first audit lists every directory.", pipe),
		stateRestore:      d("pipe_audit_state_restores_total", "Leaderships that started from the audit cache saved by an earlier run.", pipe),
		castFailures:      d("pipe_mapping_cast_failures_total", "Field values the pipe's fields_mapping could not cast (the field, or with drop_row the row, left out).", pipe),
		rowsDropped:       d("pipe_mapping_rows_dropped_total", "Rows the pipe's fields_mapping dropped for a failed cast (on_cast_error: drop_row): sent as a delete of their key.", pipe),
		rowsOverBounds:    d("pipe_rows_over_bounds_total", "Generic rows over Fusion's bounds, by kind: bad_key (left out) or oversize (sent as a delete of their key).", []string{"pipe", "kind"}),
		lastAuditDirs:     d("pipe_last_audit_dirs", "Directories of the last completed audit: listed (rolled ones included) or silent (unchanged, not listed).", []string{"pipe", "kind"}),
		realtime:          d("source_realtime", "1 while the source delivers realtime events; 0 while it runs degraded.", src),
		skipped:           d("source_entries_skipped_total", "Entries left out of walks and realtime, by reason (excluded is expected, the rest are problems).", []string{"source", "reason"}),
		busPublished:      d("bus_published_total", "Realtime events the source's bus accepted.", src),
		busRejected:       d("bus_rejected_total", "Realtime events the bus refused because their index regressed (a bug).", src),
		busLost:           d("bus_lost_total", "Reads of pipes that fell behind the bus and lost events (each asks for a snapshot).", src),
		busSplits:         d("bus_splits_total", "Slow subscribers moved to a lane of their own.", src),
		busMerges:         d("bus_merges_total", "Subscribers moved back from their own lane.", src),
		busLanes:          d("bus_lanes", "Subscribers on a lane of their own now.", src),
		busSubscribers:    d("bus_subscribers", "Open subscribers of the bus (one per pipe session).", src),
		panics:            d("panics_total", "Panics recovered in the agent's parts, by part: walk (snapshot or audit, restarted by its pipe), pipe and source (restarted by the agent).", []string{"part"}),
		reloadOK:          d("reload_success", "1 if the last reload was applied, 0 if it was refused (1 before any reload).", nil),
		reloadTime:        d("reload_timestamp_seconds", "Unix time of the last reload, applied or refused (0 before any reload).", nil),
		reloads:           d("reloads_total", "Reloads by result: applied or refused.", []string{"result"}),
		bySourceKey: map[string]sourceMetric{
			"symlinks":             counter("symlinks_total", "Symbolic links seen by walks."),
			"watches":              gauge("watches", "Directories watched in real time."),
			"watch_budget":         gauge("watch_budget", "Most directories the source may watch (max_watches, or the kernel's limit)."),
			"dirs_left_to_audit":   gauge("dirs_left_to_audit", "Directories left unwatched by the watch budget: only audits see their changes."),
			"watch_nospace":        counter("watch_nospace_total", "Watches the kernel refused for lack of inotify watches."),
			"watch_errors":         counter("watch_errors_total", "Watches refused for another reason than the kernel's limit."),
			"watches_evicted":      counter("watches_evicted_total", "Watches dropped for more recently active directories."),
			"watch_budget_lowered": counter("watch_budget_lowered_total", "Times the kernel's limit lowered the watch budget."),
			"overflows":            counter("queue_overflows_total", "Kernel event queue overflows: realtime events lost, each asks for an audit."),
			"events":               counter("events_total", "Realtime events the watcher produced."),
			"modify_coalesced":     counter("modify_coalesced_total", "Writes folded into a later event by modify_throttle."),
			"unknown_wd":           counter("unknown_wd_total", "Kernel events for watches already removed."),
			"moves_paired":         counter("moves_paired_total", "Renames inside the tree."),
			"moves_unpaired":       counter("moves_unpaired_total", "Moves into or out of the tree."),
			"snapshot_rows":        counter("walk_rows_total", "Rows handed on by walks: snapshots, audits and on-demand scans."),
			"panics":               counter("panics_total", "Panics recovered in the watcher and walks."),
			"clock_drift_ms":       drift,
			// The s3 source's (source/s3).
			"s3_requests":            counter("s3_requests_total", "Requests sent to the object store."),
			"s3_throttled":           counter("s3_throttled_total", "Requests the store answered 503 SlowDown or 429 (retried with backoff)."),
			"s3_failed_requests":     counter("s3_failed_requests_total", "Requests that failed: network errors and 5xx answers other than throttling."),
			"s3_objects_listed":      counter("s3_objects_listed_total", "Objects listed by walks."),
			"s3_listings":            counter("s3_listings_total", "Incremental listings completed (the s3 source's realtime)."),
			"s3_listing_failures":    counter("s3_listing_failures_total", "Incremental listings that failed (each retried after a backoff)."),
			"s3_changes_found":       counter("s3_changes_found_total", "Objects added or changed, found by incremental listings and sent as realtime events."),
			"s3_deletes_found":       counter("s3_deletes_found_total", "Objects deleted, found by incremental listings (each listing with any asks for an audit)."),
			"s3_audits_from_listing": counter("s3_audits_from_listing_total", "Audits that resent the last listing instead of listing again."),
			"s3_excluded":            counter("s3_excluded_total", "Keys hidden by the source's excludes."),
			"clock_index_held":       counter("clock_index_held_total", "Event indexes held at their last value because corrected time went backwards."),
			"journal_lines":          counter("journal_lines_total", "Valid lines the journal source read."),
			"journal_replays":        counter("journal_replays_total", "Times the journal source replayed its log from a committed index."),
			// The sql source's (source/sql).
			"sql_queries":        counter("sql_queries_total", "Statements sent to the database."),
			"sql_query_failures": counter("sql_query_failures_total", "Statements that failed (connection lost, timeout, ...): each retried with backoff."),
			"sql_rows_read":      counter("sql_rows_read_total", "Rows read from the table by listings and polls."),
			"sql_polls":          counter("sql_polls_total", "Realtime polls of the table."),
			"sql_deletes_found":  counter("sql_deletes_found_total", "Soft-deleted rows realtime polls sent as deletes."),
			"sql_invalid_text":   counter("sql_invalid_text_total", "Values whose text was not UTF-8 (the bad bytes replaced)."),
		},
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(c, ch) }

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	e, b := metrics.Emitter(ch), metrics.Bool
	gauge, counter := e.Gauge, e.Counter
	if c.a.reg != nil {
		byKind := c.a.reg.panicCounts()
		counter(c.panics, float64(c.a.walkPanics.Load()), "walk")
		for _, k := range []string{kindPipe, kindSource} {
			counter(c.panics, float64(byKind[k]), k)
		}
	}
	ok, at, succeeded, refused := c.a.reloads.get()
	if at.IsZero() {
		ok = true
	}
	gauge(c.reloadOK, b(ok))
	var ts float64
	if !at.IsZero() {
		ts = float64(at.UnixNano()) / 1e9
	}
	gauge(c.reloadTime, ts)
	counter(c.reloads, float64(succeeded), "applied")
	counter(c.reloads, float64(refused), "refused")
	sources, pipes := c.a.parts()
	for _, s := range sources {
		name := s.name()
		gauge(c.realtime, b(s.canRealtime()), name)
		for k, v := range s.counters() {
			if reason, ok := strings.CutPrefix(k, skippedPrefix); ok {
				counter(c.skipped, float64(v), name, reason)
			} else if m, ok := c.bySourceKey[k]; ok {
				ch <- prometheus.MustNewConstMetric(m.desc, m.typ, float64(v)*m.scale, name)
			}
		}
		for _, p := range s.pipeList() {
			gauge(c.pipeInfo, 1, p.ID(), name)
		}
		if s.bus == nil {
			continue // a journal source has no bus: it follows its log per session
		}
		st := s.bus.Stats()
		counter(c.busPublished, float64(st.Published), name)
		counter(c.busRejected, float64(st.Rejected), name)
		counter(c.busLost, float64(st.Lost), name)
		counter(c.busSplits, float64(st.Splits), name)
		counter(c.busMerges, float64(st.Merges), name)
		gauge(c.busLanes, float64(st.Lanes), name)
		gauge(c.busSubscribers, float64(st.Subscribers), name)
	}
	for _, e := range pipes {
		id := e.cfg.ID
		st := e.p.Status()
		gauge(c.sessionUp, b(st.Connected), id)
		gauge(c.leader, b(st.Role == fustorv1.Role_ROLE_LEADER), id)
		counter(c.sessions, float64(st.Sessions), id)
		counter(c.failures, float64(st.Failures), id)
		counter(c.rowsSent, float64(st.EventsSent), id)
		counter(c.snapshots, float64(st.Snapshots), id)
		counter(c.audits, float64(st.Audits), id)
		counter(c.recoveryAudits, float64(st.RecoveryAudits), id)
		counter(c.stuck, float64(st.StuckRestarts), id)
		gauge(c.snapshotRunning, b(st.SnapshotRunning), id)
		gauge(c.auditRunning, b(st.AuditRunning), id)
		gauge(c.committed, float64(st.Committed), id)
		counter(c.stateSaves, float64(st.AuditStateSaves), id)
		counter(c.stateSaveFailures, float64(st.AuditStateSaveFailures), id)
		counter(c.stateRefused, float64(st.AuditStateRefused), id)
		counter(c.stateRestore, float64(st.AuditStateRestores), id)
		counter(c.castFailures, float64(st.CastFailures), id)
		counter(c.rowsDropped, float64(st.RowsDropped), id)
		counter(c.rowsOverBounds, float64(st.RowsBadKey), id, "bad_key")
		counter(c.rowsOverBounds, float64(st.RowsOversize), id, "oversize")
		gauge(c.lastAuditDirs, float64(st.LastAudit.Dirs-st.LastAudit.Silent), id, "listed")
		gauge(c.lastAuditDirs, float64(st.LastAudit.Silent), id, "silent")
	}
}

// newRegistry holds the agent's metrics: the collector's, and the Go runtime's and process's.
func newPromRegistry(a *Agent) *prometheus.Registry { return metrics.NewRegistry(newCollector(a)) }
