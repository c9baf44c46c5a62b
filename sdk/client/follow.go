package client

import (
	"context"
	"errors"
	"iter"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
)

// Follow backoff: short first, since a replica's failover takes a moment, and bounded so a
// Fusion back from a restart is found soon.
const (
	followBackoffMin = 50 * time.Millisecond
	followBackoffMax = 5 * time.Second
)

// Follow is Watch that resumes by itself. When the stream breaks (UNAVAILABLE: Fusion
// restarting, a replica going away, the network; or the server ending it), it watches again
// from the last batch's cursor after a backoff, so no change is lost or yielded twice (or,
// when the view was rebuilt meanwhile, a batch with Reset FreshInstance says so). Other
// errors (an unknown view, a bad key, a bad cursor) end it; so do ctx and breaking out of the
// loop. With an empty req.Since, a break before the first batch resumes from the new now.
func (c *Client) Follow(ctx context.Context, req *fustorv1.WatchRequest, opts ...grpc.CallOption) iter.Seq2[*Batch, error] {
	return func(yield func(*Batch, error) bool) {
		r := &fustorv1.WatchRequest{}
		if req != nil {
			r = proto.Clone(req).(*fustorv1.WatchRequest)
		}
		backoff := followBackoffMin
		for {
			var last error
			for b, err := range c.Watch(ctx, r, opts...) {
				if err != nil {
					last = err
					break
				}
				backoff = followBackoffMin
				if b.Cursor != "" {
					r.Since = b.Cursor
				}
				if !yield(b, nil) {
					return
				}
			}
			if ctx.Err() != nil || last == nil {
				return
			}
			if status.Code(last) != codes.Unavailable && !errors.Is(last, ErrStreamEnded) {
				yield(nil, last)
				return
			}
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			backoff = min(2*backoff, followBackoffMax)
		}
	}
}
