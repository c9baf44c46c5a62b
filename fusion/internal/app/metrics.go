package app

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/fustor/fustor/fusion/internal/view"
	"github.com/fustor/fustor/sdk/metrics"
)

// collector reads Fusion's views, pipes and sessions at scrape time, so the figures cost
// nothing between scrapes and are never out of date.
type collector struct {
	f *Fusion

	viewNodes, viewFiles, viewDirs, viewBytes, viewMemory  *prometheus.Desc
	suspects, additions, deletions, tombstones, auditCycle *prometheus.Desc
	auditRunning, snapshotComplete, hasLeader              *prometheus.Desc
	queueLen, queueCap, batches, rowsApplied, rowsRejected *prometheus.Desc
	pipePanics, sessions, panics, dropped                  *prometheus.Desc
	reloadOK, reloadTime                                   *prometheus.Desc
	ckptWritten, ckptFailed, ckptRefused, ckptEncodeMax    *prometheus.Desc
	watchers, lagged, changeLogEntries, changeLogBytes     *prometheus.Desc
	pushBad                                                *prometheus.Desc
	expRunning, expWaiting, expRejected, queryVisits       *prometheus.Desc
}

func newCollector(f *Fusion) *collector {
	// Per member: an fs view's only member is "", a forest's are named (DESIGN.md §6).
	view, pipe := []string{"view", "member"}, []string{"pipe"}
	d := func(name, help string, labels []string) *prometheus.Desc {
		return prometheus.NewDesc("fustor_"+name, help, labels, nil)
	}
	return &collector{f: f,
		viewNodes:        d("view_nodes", "Nodes (files and directories) the view holds.", view),
		viewFiles:        d("view_files", "Files in the view.", view),
		viewDirs:         d("view_dirs", "Directories in the view.", view),
		viewBytes:        d("view_size_bytes", "Total size of the view's files as the agents reported them.", view),
		viewMemory:       d("view_memory_bytes", "Memory the view's tree and indexes take.", view),
		suspects:         d("view_suspects", "Files that may still be being written (integrity_suspect).", view),
		additions:        d("view_blind_spot_additions", "Files found by audits that no agent saw in real time.", view),
		deletions:        d("view_blind_spot_deletions", "Deletions found by audits or the sentinel that no agent saw in real time.", view),
		tombstones:       d("view_tombstones", "Realtime deletions remembered against stale snapshot and audit rows.", view),
		auditCycle:       d("view_audit_cycles_total", "Audits completed on the view.", view),
		auditRunning:     d("view_audit_running", "1 while an audit is open on the view.", view),
		snapshotComplete: d("view_snapshot_complete", "1 once the leader's snapshot has been applied.", view),
		hasLeader:        d("view_has_leader", "1 while the view has a leader session.", view),
		queueLen:         d("pipe_queue_length", "Batches waiting in the pipe's queue.", pipe),
		queueCap:         d("pipe_queue_capacity", "The pipe's queue bound.", pipe),
		batches:          d("pipe_batches_applied_total", "Batches the pipe applied.", pipe),
		rowsApplied:      d("pipe_rows_applied_total", "Rows the pipe applied to its views.", pipe),
		rowsRejected:     d("pipe_rows_rejected_total", "Rows refused on the pipe: malformed rows, a wrong schema, a follower's snapshot rows, rows the views rejected.", pipe),
		pipePanics:       d("pipe_panics_total", "Panics recovered while applying the pipe's batches.", pipe),
		sessions:         d("pipe_sessions", "Live agent sessions on the pipe.", pipe),
		panics:           d("grpc_server_panics_total", "Panics recovered in gRPC handlers.", nil),
		pushBad:          d("push_streams_bad_message_total", "Push streams ended for what their client sent: undecodable bytes, a malformed batch, an end without its start, a declaration table past its bound.", nil),
		watchers:         d("view_watchers", "Watch streams open on the view.", []string{"view"}),
		lagged:           d("view_watchers_lagged_total", "Watchers that read too slowly and were told lagged.", nil),
		changeLogEntries: d("view_change_log_entries", "Changes held in the member's change log.", view),
		changeLogBytes:   d("view_change_log_bytes", "Bytes the member's change log takes.", view),
		expRunning:       d("view_expensive_queries", "Expensive queries (globs, complete finds, tree chunks) running on the view.", []string{"view"}),
		expWaiting:       d("view_expensive_queries_waiting", "Expensive queries waiting for one of the view's slots.", []string{"view"}),
		expRejected:      d("view_expensive_queries_rejected_total", "Expensive queries refused RESOURCE_EXHAUSTED: no slot within expensive_query_wait, or the key's share taken.", []string{"view"}),
		queryVisits:      d("view_query_visits_total", "Work of the member's finds and listings: directories, names and children read.", view),
		reloadOK:         d("config_last_reload_successful", "1 when the last configuration reload was applied, 0 when it was refused (invalid).", nil),
		reloadTime:       d("config_last_reload_timestamp_seconds", "When the last configuration reload was asked for (0: never).", nil),
		ckptWritten:      d("checkpoints_written_total", "View checkpoints written to server.state_dir.", nil),
		ckptFailed:       d("checkpoints_failed_total", "View checkpoints that could not be written.", nil),
		ckptRefused:      d("checkpoints_refused_total", "Checkpoints refused at start (corrupt, truncated, another version) and moved aside.", nil),
		ckptEncodeMax:    d("checkpoint_encode_max_seconds", "The longest a checkpoint held a view (its apply loop waited), since the start.", nil),
		dropped:          d("view_batches_dropped_total", "Batches a view dropped because it does not accept their schema.", []string{"view", "pipe"}),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(c, ch) }

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	e, b := metrics.Emitter(ch), metrics.Bool
	gauge, counter := e.Gauge, e.Counter
	for _, v := range c.f.views.All() {
		for _, m := range v.Members() {
			if m.Rows != nil {
				c.collectRows(e, v.Name, m)
				continue
			}
			st, cs := m.State(), m.Driver.Consistency()
			gauge(c.viewNodes, float64(m.Driver.Len()), v.Name, m.Name)
			if s, err := m.Driver.Stats("/"); err == nil {
				gauge(c.viewFiles, float64(s.Files), v.Name, m.Name)
				gauge(c.viewDirs, float64(s.Dirs), v.Name, m.Name)
				gauge(c.viewBytes, float64(s.TotalSize), v.Name, m.Name)
			}
			gauge(c.viewMemory, float64(m.Driver.MemoryBytes()), v.Name, m.Name)
			gauge(c.suspects, float64(cs.Suspects), v.Name, m.Name)
			gauge(c.additions, float64(cs.Additions), v.Name, m.Name)
			gauge(c.deletions, float64(cs.Deletions), v.Name, m.Name)
			gauge(c.tombstones, float64(cs.Tombstones), v.Name, m.Name)
			counter(c.auditCycle, float64(cs.AuditCycles), v.Name, m.Name)
			gauge(c.auditRunning, b(cs.AuditRunning), v.Name, m.Name)
			gauge(c.snapshotComplete, b(st.SnapshotComplete), v.Name, m.Name)
			gauge(c.hasLeader, b(st.Leader != ""), v.Name, m.Name)
			n, bytes := m.Driver.ChangeLogStats()
			gauge(c.changeLogEntries, float64(n), v.Name, m.Name)
			gauge(c.changeLogBytes, float64(bytes), v.Name, m.Name)
			counter(c.queryVisits, float64(m.Driver.Visits()), v.Name, m.Name)
		}
	}
	live := map[string]int{}
	for _, s := range c.f.sessions.List() {
		live[s.Pipe.ID]++
	}
	pipes, _ := c.f.Pipes()
	for id, p := range pipes {
		st := p.Stats()
		gauge(c.queueLen, float64(st.QueueLen), id)
		gauge(c.queueCap, float64(st.QueueCap), id)
		counter(c.batches, float64(st.Batches), id)
		counter(c.rowsApplied, float64(st.RowsApplied), id)
		counter(c.rowsRejected, float64(st.RowsRejected), id)
		counter(c.pipePanics, float64(st.Panics), id)
		gauge(c.sessions, float64(live[id]), id)
		for name, n := range p.Dropped() {
			counter(c.dropped, float64(n), name, id)
		}
	}
	counter(c.panics, float64(c.f.panics.Load()))
	counter(c.pushBad, float64(c.f.rcv.BadMessages()))
	perView, lagged := c.f.query.WatchStats()
	for _, v := range c.f.views.All() {
		gauge(c.watchers, float64(perView[v.Name]), v.Name)
	}
	counter(c.lagged, float64(lagged))
	exp := c.f.query.ExpensiveStats()
	for _, v := range c.f.views.All() {
		st := exp[v.Name]
		gauge(c.expRunning, float64(st.Running), v.Name)
		gauge(c.expWaiting, float64(st.Waiting), v.Name)
		counter(c.expRejected, float64(st.Rejected), v.Name)
	}
	counter(c.ckptWritten, float64(c.f.ckpt.written.Load()))
	counter(c.ckptFailed, float64(c.f.ckpt.failed.Load()))
	counter(c.ckptRefused, float64(c.f.ckpt.refused.Load()))
	gauge(c.ckptEncodeMax, float64(c.f.ckpt.maxEncodeNs.Load())/1e9)
	if at := c.f.rt.lastReloadNs.Load(); at != 0 {
		gauge(c.reloadOK, b(c.f.rt.lastReloadOK.Load()))
		gauge(c.reloadTime, float64(at)/1e9)
	}
}

// newRegistry holds Fusion's metrics: the collector's, and the Go runtime's and process's (the
// gRPC server registers its own).
func newRegistry(f *Fusion) *prometheus.Registry { return metrics.NewRegistry(newCollector(f)) }

// collectRows emits a rows view's figures on the view metrics that mean the same for rows:
// rows as nodes, tombstones, blind-spot deletions as deletions, readiness.
func (c *collector) collectRows(e metrics.Emitter, viewName string, m *view.Member) {
	st, rs := m.State(), m.Rows.Stats()
	e.Gauge(c.viewNodes, float64(rs.Rows), viewName, m.Name)
	e.Gauge(c.viewMemory, float64(m.Rows.MemoryBytes()), viewName, m.Name)
	e.Gauge(c.tombstones, float64(rs.Tombstones), viewName, m.Name)
	e.Gauge(c.deletions, float64(rs.BlindSpotDeletions), viewName, m.Name)
	e.Gauge(c.auditRunning, metrics.Bool(rs.AuditRunning), viewName, m.Name)
	e.Gauge(c.snapshotComplete, metrics.Bool(st.SnapshotComplete), viewName, m.Name)
	e.Gauge(c.hasLeader, metrics.Bool(st.Leader != ""), viewName, m.Name)
}
