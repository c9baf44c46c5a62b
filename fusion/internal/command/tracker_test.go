package command

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestTracker(t *testing.T) {
	tr := NewTracker(2)
	id1, ch1, ok1 := tr.Start()
	id2, _, ok2 := tr.Start()
	if _, _, ok := tr.Start(); !ok1 || !ok2 || ok || id1 == id2 {
		t.Fatalf("bound not enforced: %v %v %v", ok1, ok2, ok)
	}
	tr.Done(id1, Result{OK: true})
	if r := <-ch1; !r.OK {
		t.Fatalf("result %+v", r)
	}
	tr.Done(id1, Result{}) // twice: ignored
	tr.Cancel(id2)
	tr.Done(id2, Result{}) // after cancel: ignored, never blocks
	if _, _, ok := tr.Start(); !ok {
		t.Fatal("slots not released")
	}
}
