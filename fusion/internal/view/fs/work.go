package fs

import "context"

// work counts what one query's walk reads (directories asked for their children, names and
// chain nodes read, children listed) and stops the walk when the query's context ends: the
// client cancelled or its deadline passed. The context is checked every checkEvery units, so
// a stopped walk reads at most that much more; the units are added to the view's count
// (Visits) at each check and at the end, not one by one, which concurrent walks would contend
// on.
type work struct {
	v   *View
	ctx context.Context
	n   int
	err error
}

const checkEvery = 256

func (v *View) work(ctx context.Context) *work {
	if ctx == nil {
		ctx = context.Background()
	}
	return &work{v: v, ctx: ctx}
}

// tick counts one unit; false means the walk must stop (err says why).
func (w *work) tick() bool {
	if w.err != nil {
		return false
	}
	if w.n++; w.n < checkEvery {
		return true
	}
	w.v.visits.Add(uint64(w.n))
	w.n = 0
	if err := w.ctx.Err(); err != nil {
		w.err = err
		return false
	}
	return true
}

// done adds the units left and returns why the walk stopped early, if it did.
func (w *work) done() error {
	w.v.visits.Add(uint64(w.n))
	w.n = 0
	return w.err
}

// Visits returns the units of work the view's finds and listings have read since it was
// built: what an expensive query costs, and proof that a stopped one stopped.
func (v *View) Visits() uint64 { return v.visits.Load() }
