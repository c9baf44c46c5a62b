package query

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"path"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/fustor/fustor/fusion/internal/errs"
	"github.com/fustor/fustor/fusion/internal/server"
	"github.com/fustor/fustor/fusion/internal/view"
	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
)

// The change feed (DESIGN.md §5.6): Watch, ListChanges and WaitStable read the members'
// change logs from a cursor. A cursor is opaque to clients: per member, the change log's
// instance and the last sequence seen, so one cursor serves an fs view and a forest alike.

// Bounds of the change feed.
const (
	DefaultChangesLimit = 1000
	MaxChangesLimit     = 100000
	// watchBatch bounds the changes one Watch message carries.
	watchBatch = 1000
	// DefaultWatchHeartbeat is how often an idle watch gets a message with the current cursor.
	DefaultWatchHeartbeat = 10 * time.Second
	// MaxWatchers bounds the watches open at once on this server.
	MaxWatchers = 1024
)

// memberCursor is one member's part of a cursor.
type memberCursor struct {
	Instance uint64 `json:"i"`
	Seq      uint64 `json:"s"`
}

type cursor map[string]memberCursor

func (c cursor) String() string {
	b, _ := json.Marshal(c)
	return "c1." + base64.RawURLEncoding.EncodeToString(b)
}

// key is the cursor as a batchCache key: cheaper than String, which every watcher of a busy
// view would otherwise marshal for each message it sends.
func (c cursor) key() string {
	if len(c) == 1 {
		for name, m := range c {
			b := make([]byte, 0, len(name)+28)
			b = append(append(b, name...), 0)
			b = append(strconv.AppendUint(b, m.Instance, 36), 0)
			return string(strconv.AppendUint(b, m.Seq, 36))
		}
	}
	names := make([]string, 0, len(c))
	for name := range c {
		names = append(names, name)
	}
	slices.Sort(names)
	b := make([]byte, 0, 40*len(c))
	for _, name := range names {
		m := c[name]
		b = append(b, name...)
		b = append(b, 0)
		b = strconv.AppendUint(b, m.Instance, 36)
		b = append(b, 0)
		b = strconv.AppendUint(b, m.Seq, 36)
		b = append(b, 0)
	}
	return string(b)
}

func parseCursor(s string) (cursor, error) {
	bad := fmt.Errorf("%w: the cursor %q is not one this server issued", errs.ErrInvalidArgument, s)
	raw, ok := strings.CutPrefix(s, "c1.")
	if !ok {
		return nil, bad
	}
	b, err := base64.RawURLEncoding.DecodeString(raw)
	if err != nil {
		return nil, bad
	}
	c := cursor{}
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, bad
	}
	return c, nil
}

// now returns the cursor of the members' current last changes.
func nowCursor(members []*view.Member) cursor {
	c := cursor{}
	for _, m := range members {
		inst, last := m.Driver.ChangeCursor()
		c[m.Name] = memberCursor{inst, last}
	}
	return c
}

// changeFilter builds the members' filter of a request; the glob is checked first.
func changeFilter(root, glob string) (view.ChangeFilter, error) {
	f := view.ChangeFilter{Root: root}
	if glob != "" {
		if err := validGlob(glob); err != nil {
			return f, err
		}
		f.Match = func(name string) bool { ok, _ := path.Match(glob, name); return ok }
	}
	return f, nil
}

// feed reads a scope's members from a cursor.
type feed struct {
	sc     scope
	f      view.ChangeFilter
	cur    cursor
	fresh  bool // the cursor asked for was of another instance
	lost   bool // it was older than a change log
	lagged bool // the reader fell behind a change log
}

// start resolves the cursor asked for against the members' instances.
func newFeed(sc scope, f view.ChangeFilter, since string) (*feed, error) {
	fd := &feed{sc: sc, f: f, cur: nowCursor(sc.members)}
	if since == "" {
		return fd, nil
	}
	asked, err := parseCursor(since)
	if err != nil {
		return nil, err
	}
	for _, m := range sc.members {
		a, ok := asked[m.Name]
		switch {
		case !ok && len(asked) > 0 && sc.fanOut:
			// A member the cursor did not know (it joined since): from its start.
			fd.cur[m.Name] = memberCursor{fd.cur[m.Name].Instance, 0}
		case !ok || a.Instance != fd.cur[m.Name].Instance:
			fd.fresh = true // keep the current position: the changes in between are unknown
		default:
			fd.cur[m.Name] = a
		}
	}
	return fd, nil
}

// behind is true when a member's log holds changes after the cursor.
func (fd *feed) behind() bool {
	for _, m := range fd.sc.members {
		if inst, last := m.Driver.ChangeCursor(); inst != fd.cur[m.Name].Instance || last > fd.cur[m.Name].Seq {
			return true
		}
	}
	return false
}

// read returns up to limit changes after the cursor, member by member, and moves it; when
// maxBytes > 0, also no more than about that many bytes of changes (at least one).
func (fd *feed) read(limit, maxBytes int) (out []*fustorv1.Change, more bool) {
	used := 0
	for _, m := range fd.sc.members {
		if len(out) >= limit {
			return out, true
		}
		c := fd.cur[m.Name]
		if inst, last := m.Driver.ChangeCursor(); inst != c.Instance {
			// The member was reset while we read: a fresh instance.
			fd.fresh = true
			fd.cur[m.Name] = memberCursor{inst, last}
			continue
		}
		page := m.Driver.Changes(c.Seq, fd.f, limit-len(out))
		if page.Lost {
			if c.Seq == 0 && fd.sc.fanOut {
				// A new member read from its start: nothing was lost that we knew of.
			} else {
				fd.lost = true
			}
		}
		fd.cur[m.Name] = memberCursor{c.Instance, page.Next}
		label := ""
		if fd.sc.fanOut {
			label = m.Name
		}
		for i, ch := range page.Changes {
			cost := entryBytes(ch.Entry, label)
			if maxBytes > 0 && len(out) > 0 && used+cost > maxBytes {
				// The byte budget ends the batch here: the cursor goes on after the last one kept.
				if i > 0 {
					c.Seq = page.Changes[i-1].Seq
				}
				fd.cur[m.Name] = c
				return out, true
			}
			used += cost
			out = append(out, toChange(ch, label))
		}
		more = more || page.More
	}
	return out, more
}

func toChange(c view.Change, member string) *fustorv1.Change {
	// The path is the Change's own: the entry carries only attributes (a watch's bytes are
	// mostly paths, and every watcher is sent each of them).
	e := toProto(c.Entry, c.Kind == view.ChangeDeleted)
	e.Path, e.Name = "", ""
	return &fustorv1.Change{Sequence: c.Seq, Path: c.Entry.Path, Kind: fustorv1.ChangeKind(c.Kind), Entry: e,
		Source: fustorv1.MessageSource(c.Origin), Member: member}
}

// ListChanges returns one page of changes since a cursor.
func (s *Service) ListChanges(ctx context.Context, req *fustorv1.ListChangesRequest) (*fustorv1.ListChangesResponse, error) {
	sc, p, err := s.open(ctx, req.GetView(), req.GetMember(), orRoot(req.GetPath()))
	if err != nil {
		return nil, err
	}
	f, err := changeFilter(p, req.GetGlob())
	if err != nil {
		return nil, err
	}
	fd, err := newFeed(sc, f, req.GetSince())
	if err != nil {
		return nil, err
	}
	out := &fustorv1.ListChangesResponse{Meta: s.meta(sc, false)}
	if req.GetSince() != "" && !fd.fresh {
		limit := int(req.GetLimit())
		if limit == 0 {
			limit = DefaultChangesLimit
		}
		out.Changes, out.More = fd.read(min(limit, MaxChangesLimit), bytesLeft(sc.v, out, 0)-tokenBytes)
	}
	out.Cursor, out.FreshInstance, out.CursorLost = fd.cur.String(), fd.fresh, fd.lost
	return out, nil
}

// Watch streams changes; see view.proto for the protocol.
func (s *Service) Watch(req *fustorv1.WatchRequest, stream fustorv1.ViewService_WatchServer) error {
	ctx := stream.Context()
	sc, p, err := s.open(ctx, req.GetView(), req.GetMember(), orRoot(req.GetPath()))
	if err != nil {
		return err
	}
	f, err := changeFilter(p, req.GetGlob())
	if err != nil {
		return err
	}
	release, err := s.admitWatch(ctx, sc.v)
	if err != nil {
		return err
	}
	defer release()
	fd, err := newFeed(sc, f, req.GetSince())
	if err != nil {
		return err
	}
	ping := make(chan struct{}, 1)
	for _, m := range sc.members {
		defer m.Driver.Subscribe(ping)()
	}
	beat := s.heartbeat
	if beat == 0 {
		beat = DefaultWatchHeartbeat
	}
	t := time.NewTimer(beat)
	defer t.Stop()
	first := &fustorv1.WatchResponse{Meta: s.meta(sc, false), Cursor: fd.cur.String(), FreshInstance: fd.fresh}
	fd.fresh = false // said in the first message
	if err := stream.Send(first); err != nil {
		return err
	}
	asked := req.GetSince() != ""
	// Messages are shared by watchers of one subtree whose streams compress alike (a shared
	// message is encoded, and compressed, for its first stream).
	filter := ""
	if comp, ok := recvCompression(ctx); ok {
		filter = req.GetView() + "\x00" + req.GetMember() + "\x00" + p + "\x00" + req.GetGlob() + "\x00" + comp
	}
	// While a snapshot or an audit is applied, its changes are held (up to the view's
	// watch_max_hold) and sent when the pass ends: the feed yields the cores to the apply loop
	// (BenchmarkSnapshotWithWatchers), and a realtime change is never held.
	hold := time.NewTimer(time.Hour)
	hold.Stop()
	defer hold.Stop()
	var holdSince time.Time
	draining := false // a hold ran out: send all that is there before holding again
	pinged := []<-chan struct{}{ping}
	for {
		left, ok, expired := time.Duration(0), false, false
		var released []<-chan struct{}
		if !draining && !asked {
			released = fd.released() // before the check: a release in between closes them
			left, ok, expired = fd.holding(sc.v.Cfg.WatchMaxHold, &holdSince, s.now())
			draining = expired
		}
		wake, holdC := pinged, (<-chan time.Time)(nil)
		if ok {
			hold.Reset(left)
			wake, holdC = released, hold.C
		} else {
			more, err := s.sendNext(stream, fd, filter, asked)
			if err != nil {
				return err
			}
			asked = false
			if more {
				continue
			}
			draining = false
		}
		res := waitWake(ctx, wake, holdC, t.C)
		hold.Stop()
		switch res {
		case waitDone:
			return nil
		case waitBeat:
			if err := stream.Send(&fustorv1.WatchResponse{Cursor: fd.cur.String()}); err != nil {
				return err
			}
			t.Reset(beat)
		}
	}
}

// released returns the members' release channels (view.ChangeLog.Released).
func (fd *feed) released() []<-chan struct{} {
	out := make([]<-chan struct{}, len(fd.sc.members))
	for i, m := range fd.sc.members {
		out[i] = m.Driver.Released()
	}
	return out
}

type waitResult int

const (
	waitWoken waitResult = iota // a wake channel fired (a ping, a release), or the hold ran out
	waitBeat                    // the heartbeat is due
	waitDone                    // the watch ends
)

// waitWake waits for the first of: ctx done, a wake channel (the per-batch ping, or while
// holding the members' releases, not the ping), the hold timer (nil: none), the heartbeat.
func waitWake(ctx context.Context, wake []<-chan struct{}, hold, beat <-chan time.Time) waitResult {
	if len(wake) == 1 {
		select {
		case <-ctx.Done():
			return waitDone
		case <-wake[0]:
		case <-hold:
		case <-beat:
			return waitBeat
		}
		return waitWoken
	}
	cases := make([]reflect.SelectCase, 0, len(wake)+3)
	cases = append(cases,
		reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(ctx.Done())},
		reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(beat)},
		reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(hold)})
	for _, w := range wake {
		cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(w)})
	}
	switch i, _, _ := reflect.Select(cases); i {
	case 0:
		return waitDone
	case 1:
		return waitBeat
	}
	return waitWoken
}

// holding is true while the watch should wait before it reads: every member with changes
// after the cursor has a bulk pass open, the changes are all the pass's, and the hold
// began (since, set here) less than maxHold ago; left is what remains of it, expired says it
// ran out. A hold that ends, for whatever reason, clears since.
func (fd *feed) holding(maxHold time.Duration, since *time.Time, now time.Time) (left time.Duration, ok, expired bool) {
	if maxHold <= 0 {
		return 0, false, false
	}
	pending := false
	for _, m := range fd.sc.members {
		c := fd.cur[m.Name]
		inst, last := m.Driver.ChangeCursor()
		if inst != c.Instance {
			*since = time.Time{} // a reset: the watcher's news
			return 0, false, false
		}
		if last <= c.Seq {
			continue
		}
		if bulk, from, live := m.Driver.DeliveryHint(); !bulk || c.Seq+1 < from || live > c.Seq {
			*since = time.Time{}
			return 0, false, false
		}
		pending = true
	}
	if !pending {
		*since = time.Time{}
		return 0, false, false
	}
	if since.IsZero() {
		*since = now
	}
	if left = maxHold - now.Sub(*since); left <= 0 {
		*since = time.Time{}
		return 0, false, true
	}
	return left, true, false
}

// recvCompression is the compressor of the stream's request, which gRPC answers with; ok is
// false when the transport does not say.
func recvCompression(ctx context.Context) (name string, ok bool) {
	st, ok := grpc.ServerTransportStreamFromContext(ctx).(interface{ RecvCompress() string })
	if !ok {
		return "", false
	}
	return st.RecvCompress(), true
}

// admitWatch counts a watch against the server's, the view's and the key's bounds.
func (s *Service) admitWatch(ctx context.Context, v *view.View) (release func(), err error) {
	key := server.PrincipalFrom(ctx).KeyID
	maxView, maxKey := cmpOr(v.Cfg.MaxWatchers, 256), cmpOr(v.Cfg.MaxWatchersPerKey, 64)
	s.watchMu.Lock()
	defer s.watchMu.Unlock()
	switch {
	case s.watchers.Load() >= MaxWatchers:
		return nil, fmt.Errorf("%w: %d watches are open on this server", errs.ErrFull, MaxWatchers)
	case s.perView[v.Name] >= maxView:
		return nil, fmt.Errorf("%w: view %q has %d watches open (views.%s.max_watchers)", errs.ErrFull, v.Name, maxView, v.Name)
	case s.perKey[key] >= maxKey:
		return nil, fmt.Errorf("%w: this key has %d watches open (views.%s.max_watchers_per_key)", errs.ErrFull, maxKey, v.Name)
	}
	s.watchers.Add(1)
	s.perView[v.Name]++
	s.perKey[key]++
	return func() {
		s.watchMu.Lock()
		defer s.watchMu.Unlock()
		s.watchers.Add(-1)
		if s.perView[v.Name]--; s.perView[v.Name] == 0 {
			delete(s.perView, v.Name)
		}
		if s.perKey[key]--; s.perKey[key] == 0 {
			delete(s.perKey, key)
		}
	}, nil
}

func cmpOr(v, def int) int {
	if v > 0 {
		return v
	}
	return def
}

// WatchStats returns the open watches by view and how many watchers lagged since the start.
func (s *Service) WatchStats() (perView map[string]int, lagged uint64) {
	s.watchMu.Lock()
	defer s.watchMu.Unlock()
	perView = make(map[string]int, len(s.perView))
	for k, v := range s.perView {
		perView[k] = v
	}
	return perView, s.lagged.Load()
}

// sendNext sends what the watch has after its cursor, if anything, and moves the cursor; more
// is true when the log holds more already. asked says the cursor is still the one the request
// named (a lost cursor is then cursor_lost, later lagged).
func (s *Service) sendNext(stream fustorv1.ViewService_WatchServer, fd *feed, filter string, asked bool) (more bool, err error) {
	// Watchers of one subtree at one cursor (most often all of them, at the log's end) get the
	// same message: the first reads and encodes it, the others wait for it (batchCache).
	var e *sharedBatch
	if filter != "" && !fd.fresh && !fd.lost {
		var first bool
		e, first = s.batches.claim(filter + "\x00" + fd.cur.key())
		if !first {
			select {
			case <-e.done:
			case <-stream.Context().Done():
				return false, stream.Context().Err()
			}
			if e.msg != nil {
				fd.cur = maps.Clone(e.after) // the shared cursor is never written
				return e.more || fd.behind(), stream.SendMsg(e.msg)
			}
			e = nil // nothing was shared: read alone
		}
	}
	changes, more := fd.read(watchBatch, answerBytes(fd.sc.v)-tokenBytes)
	switch {
	case fd.fresh || fd.lost:
		s.batches.settle(e) // this watcher's own news: nothing shared
		msg := &fustorv1.WatchResponse{Changes: changes, Cursor: fd.cur.String(), FreshInstance: fd.fresh}
		if fd.lost {
			// Before the first read it is the cursor asked for that was too old; after, the
			// watcher fell behind the log.
			msg.CursorLost, msg.Lagged = asked, !asked
			if msg.Lagged {
				s.lagged.Add(1)
			}
		}
		fd.fresh, fd.lost = false, false
		return more, stream.Send(msg)
	case len(changes) > 0:
		pm := &grpc.PreparedMsg{}
		if err := pm.Encode(stream, &fustorv1.WatchResponse{Changes: changes, Cursor: fd.cur.String()}); err != nil {
			return false, err
		}
		if e != nil {
			e.msg, e.after, e.more = pm, maps.Clone(fd.cur), more
			s.batches.settle(e) // before sending: a slow stream must not hold the others
		}
		return more, stream.SendMsg(pm)
	}
	s.batches.settle(e)
	return more, nil
}

// waitMargin is how long before the request's deadline WaitStable answers "not stable", so
// the answer, not DEADLINE_EXCEEDED, reaches the caller.
const waitMargin = 200 * time.Millisecond

// WaitStable returns when the subtree holds no suspect, has had no change for the quiet
// period and holds at least min_files files; or just before the deadline with the reason.
func (s *Service) WaitStable(ctx context.Context, req *fustorv1.WaitStableRequest) (*fustorv1.WaitStableResponse, error) {
	sc, p, err := s.open(ctx, req.GetView(), req.GetMember(), orRoot(req.GetPath()))
	if err != nil {
		return nil, err
	}
	if sc.fanOut {
		return nil, fmt.Errorf("%w: wait on one member of a forest view: set member", errs.ErrInvalidArgument)
	}
	m := sc.one()
	quiet := req.GetQuiet().AsDuration()
	if quiet <= 0 {
		quiet = sc.v.Cfg.HotThreshold
	}
	f, _ := changeFilter(p, "")
	fd, _ := newFeed(sc, f, "")
	ping := make(chan struct{}, 1)
	defer m.Driver.Subscribe(ping)()
	now := s.now
	start := now()
	quietSince, lastChange := start, time.Time{}
	var stop <-chan time.Time
	if dl, ok := ctx.Deadline(); ok {
		st := time.NewTimer(time.Until(dl) - waitMargin)
		defer st.Stop()
		stop = st.C
	}
	for {
		if changes, _ := fd.read(MaxChangesLimit, 0); len(changes) > 0 || fd.fresh || fd.lost {
			quietSince, lastChange = now(), now()
			fd.fresh, fd.lost = false, false
		}
		out := &fustorv1.WaitStableResponse{Meta: s.meta(sc, false), Cursor: fd.cur.String()}
		if !lastChange.IsZero() {
			out.LastChange = timestamppb.New(lastChange)
		}
		suspects, _ := m.Driver.Suspects(p, 100)
		for _, e := range suspects {
			out.Suspects = append(out.Suspects, e.Entry.Path)
		}
		if st, err := m.Driver.Stats(p); err == nil {
			out.Files = st.Files
		}
		left := quiet - now().Sub(quietSince)
		var why []string
		if len(out.Suspects) > 0 {
			why = append(why, fmt.Sprintf("%d suspect files (still being written?), e.g. %s", len(out.Suspects), out.Suspects[0]))
		}
		if left > 0 {
			if lastChange.IsZero() {
				why = append(why, fmt.Sprintf("quiet for %v of %v", now().Sub(quietSince).Round(time.Millisecond), quiet))
			} else {
				why = append(why, fmt.Sprintf("last change %v ago (quiet period %v)", now().Sub(lastChange).Round(time.Millisecond), quiet))
			}
		}
		if out.Files < req.GetMinFiles() {
			why = append(why, fmt.Sprintf("%d files of the %d awaited", out.Files, req.GetMinFiles()))
		}
		if len(why) == 0 {
			out.Stable = true
			return out, nil
		}
		out.Reason = strings.Join(why, "; ")
		// Suspects expire on the view's own clock: look again at least every second.
		wait := time.Second
		if left > 0 {
			wait = min(wait, left)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-stop:
			t.Stop()
			return out, nil
		case <-ping:
		case <-t.C:
		}
		t.Stop()
	}
}

// sharedBatch is one Watch message read and encoded for watchers at one place, and the cursor
// after it; done is closed when it is settled (msg nil: nothing to share).
type sharedBatch struct {
	key   string
	done  chan struct{}
	msg   *grpc.PreparedMsg
	after cursor
	more  bool
}

// batchCache holds the last messages read per (subtree, compression, cursor), so watchers at
// the same place share one read of the log and one encoding. Bounded: it is cleared when full.
type batchCache struct {
	mu sync.Mutex
	m  map[string]*sharedBatch
}

const maxCachedBatches = 256

// claim returns the batch for key; first is true when the caller must read it and settle it.
func (c *batchCache) claim(key string) (b *sharedBatch, first bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if b, ok := c.m[key]; ok {
		return b, false
	}
	if c.m == nil || len(c.m) >= maxCachedBatches {
		c.m = map[string]*sharedBatch{}
	}
	b = &sharedBatch{key: key, done: make(chan struct{})}
	c.m[key] = b
	return b, true
}

// settle releases the watchers waiting on b; a batch with nothing to share is forgotten, so
// the next watcher at that place reads again.
func (c *batchCache) settle(b *sharedBatch) {
	if b == nil {
		return
	}
	if b.msg == nil {
		c.mu.Lock()
		if c.m[b.key] == b {
			delete(c.m, b.key)
		}
		c.mu.Unlock()
	}
	close(b.done)
}
