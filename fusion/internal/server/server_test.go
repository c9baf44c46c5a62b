package server

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/fustor/fustor/fusion/internal/config"
	"github.com/fustor/fustor/fusion/internal/errs"
	"github.com/fustor/fustor/fusion/internal/session"
	"github.com/fustor/fustor/sdk/fsbatch"
	"github.com/fustor/fustor/sdk/fspath"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestToStatus(t *testing.T) {
	tests := []struct {
		err  error
		want codes.Code
	}{
		{fmt.Errorf("x: %w", fspath.ErrInvalid), codes.InvalidArgument},
		{fmt.Errorf("x: %w", fsbatch.ErrMalformed), codes.InvalidArgument},
		{fmt.Errorf("x: %w", errs.ErrNotFound), codes.NotFound},
		{fmt.Errorf("x: %w", session.ErrNotFound), codes.NotFound},
		{fmt.Errorf("x: %w", errs.ErrNotDir), codes.FailedPrecondition},
		{fmt.Errorf("x: %w", errs.ErrNotReady), codes.Unavailable},
		{fmt.Errorf("x: %w", session.ErrTooMany), codes.ResourceExhausted},
		{fmt.Errorf("x: %w", errs.ErrPermission), codes.PermissionDenied},
		{fmt.Errorf("x: %w", errs.ErrInvalidArgument), codes.InvalidArgument},
		{fmt.Errorf("x: %w", errs.ErrPrecondition), codes.FailedPrecondition},
		{fmt.Errorf("x: %w", errs.ErrUnavailable), codes.Unavailable},
		{fmt.Errorf("x: %w", errs.ErrAborted), codes.Aborted},
		{fmt.Errorf("x: %w", errs.ErrVerifyRunning), codes.Aborted},
		{fmt.Errorf("x: %w", errs.ErrFull), codes.ResourceExhausted},
		// The first kind wins: a precondition caused by a missing session is NOT_FOUND.
		{fmt.Errorf("%w: no leader: %w", errs.ErrPrecondition, session.ErrNotFound), codes.NotFound},
		{context.Canceled, codes.Canceled},
		{status.Error(codes.Aborted, "as is"), codes.Aborted},
		{errors.New("boom"), codes.Internal},
	}
	for _, tt := range tests {
		got := ToStatus(tt.err)
		if status.Code(got) != tt.want || status.Convert(got).Message() == "" {
			t.Errorf("ToStatus(%v) = %v; want %v", tt.err, got, tt.want)
		}
	}
	if ToStatus(nil) != nil {
		t.Error("ToStatus(nil) != nil")
	}
}

func TestAuthenticate(t *testing.T) {
	cfg := config.Demo()
	ks, err := cfg.Keys()
	if err != nil {
		t.Fatal(err)
	}
	k := NewKeys(ks)
	md := func(kv ...string) context.Context {
		return metadata.NewIncomingContext(context.Background(), metadata.Pairs(kv...))
	}
	tests := []struct {
		name   string
		ctx    context.Context
		method string
		want   codes.Code
		kind   Kind
	}{
		{"health is open", context.Background(), "/grpc.health.v1.Health/Check", codes.OK, KindNone},
		{"bearer query key", md("authorization", "Bearer demo-key"), "/fustor.v1.ViewService/Stat", codes.OK, KindQuery},
		{"x-api-key ingest key", md("x-api-key", "demo-ingest-key"), "/fustor.v1.PushService/Push", codes.OK, KindIngest},
		{"admin key", md("authorization", "Bearer demo-key"), "/fustor.v1.AdminService/ListSessions", codes.OK, KindAdmin},
		{"missing", context.Background(), "/fustor.v1.ViewService/Stat", codes.Unauthenticated, 0},
		{"query key on ingest", md("authorization", "Bearer demo-key"), "/fustor.v1.SessionService/CreateSession", codes.Unauthenticated, 0},
		{"ingest key on admin", md("authorization", "Bearer demo-ingest-key"), "/fustor.v1.AdminService/ListPipes", codes.Unauthenticated, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, err := k.authenticate(tt.ctx, tt.method)
			if status.Code(err) != tt.want {
				t.Fatalf("err = %v; want %v", err, tt.want)
			}
			if err == nil && tt.kind != KindNone && PrincipalFrom(ctx).Kind != tt.kind {
				t.Fatalf("principal %+v", PrincipalFrom(ctx))
			}
		})
	}
	ctx, _ := k.authenticate(md("authorization", "Bearer demo-key"), "/fustor.v1.ViewService/Stat")
	if !PrincipalFrom(ctx).CanQuery("demo") || PrincipalFrom(ctx).CanQuery("other") {
		t.Fatal("query key scope is wrong")
	}
}
