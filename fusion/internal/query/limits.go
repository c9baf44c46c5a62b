package query

import (
	"context"
	"fmt"
	"sync"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/fustor/fustor/fusion/internal/config"
	"github.com/fustor/fustor/fusion/internal/server"
	"github.com/fustor/fustor/fusion/internal/view"
)

// Expensive queries are the ones whose cost grows with the view rather than with the answer:
// a glob, a complete find, a tree. They are CPU-bound walks under the view's read lock, and
// without a bound a hundred of them at once take every core and every cheap query waits
// behind them. Each view therefore has its own slots for them (views.<id>.max_expensive_queries,
// max_expensive_queries_per_key): a query beyond waits up to expensive_query_wait for one,
// then is refused RESOURCE_EXHAUSTED with a google.rpc.RetryInfo saying when to try again.
// Cheap queries (Stat, GetStats, ListDirectory pages, exact-name finds) never take a slot.

// MaxGlobBytes bounds a glob: matching costs its length for every name read, and no name is
// longer than the ingest's name bound.
const MaxGlobBytes = 1024

// limiter holds every view's slots.
type limiter struct {
	mu    sync.Mutex
	views map[string]*slots
	// admitted, when set (tests), is called with the query's context once it holds a slot.
	admitted func(ctx context.Context)
}

// slots are one view's expensive queries: held in all and by key, waiters woken by closing
// freed, and the rejections and the mean time a slot is held, for the retry hint.
type slots struct {
	held     int
	byKey    map[uint64]int
	waiting  int
	freed    chan struct{}
	rejected uint64
	meanNs   float64
}

// ExpensiveStats is one view's expensive-query figures.
type ExpensiveStats struct {
	Running, Waiting int
	Rejected         uint64
}

func (l *limiter) of(name string) *slots {
	if l.views == nil {
		l.views = map[string]*slots{}
	}
	s, ok := l.views[name]
	if !ok {
		s = &slots{byKey: map[uint64]int{}, freed: make(chan struct{})}
		l.views[name] = s
	}
	return s
}

// stats returns every view's figures.
func (l *limiter) stats() map[string]ExpensiveStats {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]ExpensiveStats, len(l.views))
	for name, s := range l.views {
		out[name] = ExpensiveStats{Running: s.held, Waiting: s.waiting, Rejected: s.rejected}
	}
	return out
}

// acquire takes a slot of view v for the caller's key, waiting for one up to the view's
// expensive_query_wait (forever when patient, for a stream already admitted: only ctx ends
// the wait). release frees it.
func (l *limiter) acquire(ctx context.Context, v *view.View, patient bool) (release func(), err error) {
	cfg := v.Cfg
	maxView := cmpOr(cfg.MaxExpensiveQueries, config.DefaultMaxExpensiveQueries())
	maxKey := cmpOr(cfg.MaxExpensiveQueriesPerKey, config.DefaultMaxExpensiveQueriesPerKey)
	wait := cfg.ExpensiveQueryWait
	if wait <= 0 {
		wait = config.DefaultExpensiveQueryWait
	}
	key := server.PrincipalFrom(ctx).KeyID
	var timeout <-chan time.Time
	if !patient {
		t := time.NewTimer(wait)
		defer t.Stop()
		timeout = t.C
	}
	l.mu.Lock()
	s := l.of(v.Name)
	for {
		if s.held < maxView && s.byKey[key] < maxKey {
			break
		}
		freed := s.freed
		s.waiting++
		l.mu.Unlock()
		var done bool
		select {
		case <-freed:
		case <-timeout:
			done = true
		case <-ctx.Done():
			l.mu.Lock()
			s.waiting--
			l.mu.Unlock()
			return nil, ctx.Err()
		}
		l.mu.Lock()
		s.waiting--
		if done && !(s.held < maxView && s.byKey[key] < maxKey) {
			s.rejected++
			err := l.refusal(s, v.Name, maxView, maxKey, key, wait)
			l.mu.Unlock()
			return nil, err
		}
	}
	s.held++
	s.byKey[key]++
	hook := l.admitted
	l.mu.Unlock()
	if hook != nil {
		hook(ctx)
	}
	began := time.Now()
	return sync.OnceFunc(func() {
		took := float64(time.Since(began))
		l.mu.Lock()
		defer l.mu.Unlock()
		s.held--
		if s.byKey[key]--; s.byKey[key] <= 0 {
			delete(s.byKey, key)
		}
		// A moving mean over the last few dozen queries: the retry hint follows the load.
		s.meanNs += (took - s.meanNs) / 32
		close(s.freed)
		s.freed = make(chan struct{})
	}), nil
}

// refusal is RESOURCE_EXHAUSTED naming the bound that was hit, with a RetryInfo: about the
// time the queries ahead take to drain through the slots, at least 100 ms, at most 30 s. It
// is a status here, not a domain error for server.ToStatus, because the retry hint is a
// status detail that only this bound carries. Called with l.mu held.
func (l *limiter) refusal(s *slots, name string, maxView, maxKey int, key uint64, wait time.Duration) error {
	var msg string
	if s.byKey[key] >= maxKey {
		msg = fmt.Sprintf("this key has %d expensive queries (globs, complete finds, trees) running on view %q (views.%s.max_expensive_queries_per_key); retry later", s.byKey[key], name, name)
	} else {
		msg = fmt.Sprintf("view %q has %d expensive queries (globs, complete finds, trees) running and none ended within %v (views.%s.max_expensive_queries, expensive_query_wait); retry later", name, s.held, wait, name)
	}
	ahead := float64(s.held+s.waiting) / float64(max(1, maxView))
	delay := time.Duration(ahead * s.meanNs)
	delay = min(max(delay, 100*time.Millisecond), 30*time.Second)
	st, err := status.New(codes.ResourceExhausted, msg).WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(delay)})
	if err != nil {
		return status.Error(codes.ResourceExhausted, msg)
	}
	return st.Err()
}

// SetAdmitHook makes every expensive query call hook with its context once it holds a slot
// (tests: a query held at a known point, its slot taken, while others arrive).
func (s *Service) SetAdmitHook(hook func(ctx context.Context)) {
	s.limits.mu.Lock()
	defer s.limits.mu.Unlock()
	s.limits.admitted = hook
}

// ExpensiveStats returns each view's expensive-query figures (metrics).
func (s *Service) ExpensiveStats() map[string]ExpensiveStats { return s.limits.stats() }

// expensiveFind says whether a find is expensive: a glob reads every name of the subtree
// (or of the name table); an exact name is answered from its name chain unless it asks for
// more than the default limit (a complete find, whose chain may be walked whole).
func expensiveFind(glob string, limit uint32) bool {
	return glob != "" || int(limit) > DefaultFindLimit
}

// answerBytes is the view's byte budget of one answer or streamed message.
func answerBytes(v *view.View) int {
	return cmpOr(v.Cfg.MaxAnswerBytes, config.DefaultMaxAnswerBytes)
}

// entryBytes is what an answer spends on an entry message (view.EntryBytes, plus its member).
func entryBytes(e view.Entry, member string) int {
	return view.EntryBytes(len(e.Path), len(e.Name)) + len(member)
}
