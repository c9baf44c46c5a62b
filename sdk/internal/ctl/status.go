package ctl

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"time"

	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
)

// statusDoc is what `fustorctl status --json` prints: one document, every view.
type statusDoc struct {
	Views []viewStatus `json:"views"`
}

// viewStatus is one view's state. An fs view's state is its one member's, inlined; a forest
// view has one entry per member instead.
type viewStatus struct {
	View   string `json:"view"`
	Driver string `json:"driver,omitempty"`
	Nodes  uint64 `json:"nodes"`
	memberStatus
	Members []memberStatus `json:"members,omitempty"`
}

// memberStatus is the state of one tree: readiness, its leader, the leader's running walk.
type memberStatus struct {
	Member string        `json:"member,omitempty"`
	Ready  bool          `json:"ready"`
	Reason string        `json:"reason,omitempty"`
	Leader *leaderStatus `json:"leader,omitempty"`
	Walk   *walkStatus   `json:"walk,omitempty"`
}

type leaderStatus struct {
	Agent   string `json:"agent"`
	Session string `json:"session"`
	// walks is the leader's count of ended snapshots and audits, so --watch can tell a walk
	// that ended from one that vanished with its session.
	walks uint64
}

// walkStatus is a running snapshot or audit as the leader last reported it.
type walkStatus struct {
	Kind             string  `json:"kind"`
	Dirs             uint64  `json:"dirs"`
	Files            uint64  `json:"files"`
	ElapsedSeconds   float64 `json:"elapsed_seconds"`
	EntriesPerSecond float64 `json:"entries_per_second"`
	// Total is the entries the walk is expected to reach (0 = unknown); TotalFrom says whence:
	// "last_walk" (the agent's last complete walk) or "view_nodes" (the tree the view holds).
	Total     uint64 `json:"total,omitempty"`
	TotalFrom string `json:"total_from,omitempty"`
	// Percent and ETASeconds are set when Total is known.
	Percent    *float64 `json:"percent,omitempty"`
	ETASeconds *float64 `json:"eta_seconds,omitempty"`
	// Done marks, under --watch, a walk seen running that has ended since.
	Done bool `json:"done,omitempty"`
}

// Reasons a tree is not ready.
const (
	reasonNoLeader = "no leader (no agent connected)"
	reasonSnapshot = "first snapshot running"
	reasonWaiting  = "waiting for the leader's first snapshot"
	reasonStale    = "stale: no agent session feeds it; answering from the tree it kept"
	reasonRestored = "restored from Fusion's checkpoint, not yet confirmed by its agent's snapshot"
	reasonApplying = "applying the first snapshot"
)

// buildStatus joins AdminService's views and sessions into each view's state. A forest's
// member is fed by the sessions whose leadership key is "view/member".
func buildStatus(views []*fustorv1.AdminViewInfo, sessions []*fustorv1.SessionInfo) statusDoc {
	leaders := map[string]*fustorv1.SessionInfo{}
	for _, s := range sessions {
		if s.GetRole() != fustorv1.Role_ROLE_LEADER {
			continue
		}
		for _, k := range s.GetViews() {
			leaders[k] = s
		}
	}
	doc := statusDoc{Views: []viewStatus{}}
	for _, v := range views {
		vs := viewStatus{View: v.GetId(), Driver: v.GetDriver(), Nodes: v.GetNodes()}
		meta := v.GetMeta()
		if len(meta.GetMembers()) == 0 {
			// The view's nodes are a total only when they are a complete tree: during a first
			// snapshot they grow with the walk and would read as 100 % throughout.
			var nodes uint64
			if meta.GetSnapshotComplete() {
				nodes = v.GetNodes()
			}
			vs.memberStatus = treeStatus("", meta.GetAuthoritativeSession(), meta.GetSnapshotComplete(), leaders[v.GetId()], nodes)
			kept(&vs.memberStatus, meta.GetRestored(), meta.GetStale())
		} else {
			vs.Ready, vs.Reason = true, ""
			for _, m := range meta.GetMembers() {
				// A member's own size is not in the answer: only the agent's estimate is a total.
				ms := treeStatus(m.GetMember(), m.GetAuthoritativeSession(), m.GetSnapshotComplete(), leaders[v.GetId()+"/"+m.GetMember()], 0)
				kept(&ms, m.GetRestored(), m.GetStale())
				vs.Members = append(vs.Members, ms)
				if !ms.Ready {
					vs.Ready = false
				}
			}
			if !vs.Ready {
				vs.Reason = "a member is not ready"
			}
		}
		doc.Views = append(doc.Views, vs)
	}
	return doc
}

// treeStatus is one tree's state from its readiness flags, its leader session (nil = none)
// and the size of the complete tree it holds (0 = none or unknown).
func treeStatus(member string, led, complete bool, leader *fustorv1.SessionInfo, nodes uint64) memberStatus {
	ms := memberStatus{Member: member, Ready: led && complete}
	if leader != nil {
		c := leader.GetCounters()
		ms.Leader = &leaderStatus{Agent: leader.GetAgentId(), Session: leader.GetSessionId(), walks: c["snapshots"] + c["audits"]}
		ms.Walk = walkOf(leader.GetProgress().GetWalk(), nodes)
	}
	switch {
	case !led:
		ms.Reason = reasonNoLeader
	case !complete && ms.Walk != nil && ms.Walk.Kind == "snapshot":
		ms.Reason = reasonSnapshot
	case !complete:
		ms.Reason = reasonWaiting
	}
	return ms
}

// kept marks a tree that answers without an agent's confirmation: restored from Fusion's
// checkpoint, or kept when its last session ended (stale). It is ready, with the reason.
func kept(ms *memberStatus, restored, stale bool) {
	switch {
	case restored:
		ms.Ready, ms.Reason = true, reasonRestored
	case stale:
		ms.Ready, ms.Reason = true, reasonStale
	}
}

// walkOf turns a reported walk into its status; the total is the agent's estimate, else the
// view's nodes.
func walkOf(w *fustorv1.WalkProgress, nodes uint64) *walkStatus {
	if w == nil {
		return nil
	}
	ws := &walkStatus{Kind: w.GetKind(), Dirs: w.GetDirs(), Files: w.GetFiles(),
		ElapsedSeconds: w.GetElapsed().AsDuration().Seconds(), EntriesPerSecond: w.GetEntriesPerSecond()}
	switch {
	case w.GetEstimatedTotal() > 0:
		ws.Total, ws.TotalFrom = w.GetEstimatedTotal(), "last_walk"
	case nodes > 0:
		ws.Total, ws.TotalFrom = nodes, "view_nodes"
	}
	if ws.Total > 0 {
		done := ws.Dirs + ws.Files
		// Floored and capped: 100 % is said only once the total is reached, and a tree that
		// grew past its estimate does not read 130 %.
		pct := math.Min(100, math.Floor(float64(done)*100/float64(ws.Total)))
		ws.Percent = &pct
		// No ETA before the walk has a rate (the first rows can take a while: hot files are
		// sent last).
		switch left := float64(ws.Total) - float64(done); {
		case left <= 0:
			ws.ETASeconds = new(0.0)
		case ws.EntriesPerSecond > 0:
			ws.ETASeconds = new(left / ws.EntriesPerSecond)
		}
	}
	return ws
}

// barWidth is the progress bar's cells.
const barWidth = 20

// bar draws pct (0–100) as [#####.....].
func bar(pct float64) string {
	n := int(math.Round(pct / 100 * barWidth))
	n = max(0, min(barWidth, n))
	return "[" + strings.Repeat("#", n) + strings.Repeat(".", barWidth-n) + "]"
}

// renderStatus writes doc for people: one line per view (or per forest member), and under
// it the running walk — with a bar on a terminal (tty), as plain figures otherwise.
func renderStatus(w io.Writer, doc statusDoc, tty bool) {
	if len(doc.Views) == 0 {
		fmt.Fprintln(w, "no views")
	}
	for _, v := range doc.Views {
		if len(v.Members) == 0 {
			fmt.Fprintf(w, "%s: %s\n", v.View, treeLine(v.memberStatus, v.Nodes, true))
			walkLine(w, "  ", v.Walk, tty)
			continue
		}
		state := "ready"
		if !v.Ready {
			state = "not ready: " + v.Reason
		}
		fmt.Fprintf(w, "%s: forest of %d members, %s, %d nodes\n", v.View, len(v.Members), state, v.Nodes)
		for _, m := range v.Members {
			fmt.Fprintf(w, "  %s: %s\n", m.Member, treeLine(m, 0, false))
			walkLine(w, "    ", m.Walk, tty)
		}
	}
}

func treeLine(m memberStatus, nodes uint64, withNodes bool) string {
	var b strings.Builder
	if m.Ready {
		b.WriteString("ready")
	} else {
		b.WriteString("not ready: " + m.Reason)
	}
	if m.Leader != nil {
		fmt.Fprintf(&b, ", leader %s (session %s)", m.Leader.Agent, m.Leader.Session)
	}
	if withNodes {
		fmt.Fprintf(&b, ", %d nodes", nodes)
	}
	return b.String()
}

func walkLine(w io.Writer, indent string, ws *walkStatus, tty bool) {
	if ws == nil {
		return
	}
	if ws.Done {
		if tty {
			fmt.Fprintf(w, "%s%s %s 100%% done\n", indent, ws.Kind, bar(100))
		} else {
			fmt.Fprintf(w, "%s%s done 100%%\n", indent, ws.Kind)
		}
		return
	}
	var b strings.Builder
	b.WriteString(indent + ws.Kind)
	if ws.Percent != nil {
		if tty {
			b.WriteString(" " + bar(*ws.Percent))
		}
		fmt.Fprintf(&b, " %3.0f%%", *ws.Percent)
	}
	fmt.Fprintf(&b, "  dirs %d  files %d", ws.Dirs, ws.Files)
	if ws.Total > 0 {
		from := "last walk"
		if ws.TotalFrom == "view_nodes" {
			from = "view"
		}
		fmt.Fprintf(&b, " of ~%d (%s)", ws.Total, from)
	}
	fmt.Fprintf(&b, "  %.0f/s  elapsed %s", ws.EntriesPerSecond, seconds(ws.ElapsedSeconds))
	switch {
	case ws.Total == 0:
		b.WriteString("  (total unknown: no earlier walk)")
	case ws.ETASeconds != nil:
		fmt.Fprintf(&b, "  eta %s", seconds(*ws.ETASeconds))
	}
	fmt.Fprintln(w, b.String())
}

func seconds(s float64) string {
	return time.Duration(s * float64(time.Second)).Round(100 * time.Millisecond).String()
}

// isTerminal reports whether w is a terminal (a character device that is not /dev/null),
// without a terminal library: enough to choose between a redrawn bar and plain lines.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	if err != nil || st.Mode()&os.ModeCharDevice == 0 {
		return false
	}
	null, err := os.Stat(os.DevNull)
	return err != nil || !os.SameFile(st, null)
}

// watchEvery is how often --watch asks again.
const watchEvery = time.Second

// status prints each view's state (fustorctl status). With --watch it asks again every
// watchEvery while a walk runs or a tree with a leader awaits its first snapshot (so a watch
// started before the walk shows, or between two heartbeats, does not end at once), redrawing on a terminal and appending plain lines otherwise;
// each call has its own --timeout, so a watch can outlast it.
func (c *client) status(parent context.Context, args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("%w: status takes no arguments (got %s)", errUsage, strings.Join(args, " "))
	}
	tty := isTerminal(c.out)
	var (
		drawn int                      // lines of the last drawing, to redraw over them
		seen  = map[string]*seenWalk{} // walks seen running, by view and member
		doc   statusDoc
	)
	for {
		var err error
		if doc, err = c.fetchStatus(parent); err != nil {
			return err
		}
		running := markDone(doc, seen)
		if c.o.json {
			if !c.o.watch || !running {
				b, err := json.MarshalIndent(doc, "", "  ")
				if err != nil {
					return fmt.Errorf("encode json: %w", err)
				}
				_, err = fmt.Fprintln(c.out, string(b))
				return err
			}
		} else {
			var b strings.Builder
			renderStatus(&b, doc, tty)
			if tty && drawn > 0 {
				fmt.Fprintf(c.out, "\x1b[%dA\x1b[J", drawn) // up over the last drawing, clear it
			}
			fmt.Fprint(c.out, b.String())
			drawn = strings.Count(b.String(), "\n")
			if !c.o.watch || !running {
				return nil
			}
		}
		t := time.NewTimer(watchEvery)
		select {
		case <-parent.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

func (c *client) fetchStatus(parent context.Context) (statusDoc, error) {
	ctx, cancel := c.ctx(parent)
	defer cancel()
	views, err := c.api.Admin().ListViews(ctx)
	if err != nil {
		return statusDoc{}, err
	}
	sessions, err := c.api.Admin().ListSessions(ctx, &fustorv1.ListSessionsRequest{})
	if err != nil {
		return statusDoc{}, err
	}
	return buildStatus(views.GetViews(), sessions.GetSessions()), nil
}

// seenWalk is a walk --watch saw running: its kind, and its leader's count of ended walks then.
type seenWalk struct {
	kind    string
	session string
	walks   uint64
	// done: it ended while the tree was not ready yet.
	done bool
}

// markDone records the walks running in doc and marks as done the ones seen before that have
// ended since: their leader's count of ended walks (Fusion's, counted when the end marker
// arrives) grew since the walk was first seen. That count, not the walk vanishing, says it
// ended, because the leader's last heartbeat rarely catches a walk's last entries and may
// still show a walk that has ended. It reports whether there is more to watch: a walk still
// runs, or a tree has a leader but is not ready (its first snapshot is due or under way).
func markDone(doc statusDoc, seen map[string]*seenWalk) bool {
	running := false
	visit := func(key string, m *memberStatus) {
		if m.Leader != nil && !m.Ready {
			running = true
		}
		prev := seen[key]
		if prev != nil && (m.Leader == nil || m.Leader.Session != prev.session) {
			delete(seen, key) // its session is gone: whether it ended is not known
			prev = nil
		}
		if prev != nil && (prev.done || m.Leader.walks > prev.walks) {
			pct := 100.0
			m.Walk = &walkStatus{Kind: prev.kind, Done: true, Percent: &pct}
			if m.Ready {
				delete(seen, key)
				return
			}
			// Fusion counts the end marker when it arrives, before its pipe has applied the
			// walk: the walk is done, the tree not ready yet. Both are shown until it is.
			prev.done = true
			if m.Reason == reasonWaiting {
				m.Reason = reasonApplying
			}
			return
		}
		if m.Walk == nil {
			if prev == nil && m.Leader != nil && !m.Ready {
				// A first snapshot is due, or runs unreported yet (a heartbeat is sent every
				// half session timeout, and a walk can be shorter): its end is watched for too.
				seen[key] = &seenWalk{kind: "snapshot", session: m.Leader.Session, walks: m.Leader.walks}
			}
			return
		}
		running = true
		if prev == nil {
			seen[key] = &seenWalk{kind: m.Walk.Kind, session: m.Leader.Session, walks: m.Leader.walks}
		}
	}
	for i := range doc.Views {
		v := &doc.Views[i]
		if len(v.Members) == 0 {
			visit(v.View, &v.memberStatus)
		}
		for j := range v.Members {
			visit(v.View+"/"+v.Members[j].Member, &v.Members[j])
		}
	}
	return running
}
