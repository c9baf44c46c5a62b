package server

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"strings"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/fustor/fustor/fusion/internal/config"
)

// Kind is the class of API key a service requires (DESIGN.md §3: keys belong to the receiver
// for ingest, to views for queries; admin keys are Fusion's own).
type Kind int

// Key classes.
const (
	KindNone Kind = iota
	KindIngest
	KindQuery
	KindAdmin
)

// Principal is the authenticated caller, stored in the request context.
type Principal struct {
	Kind Kind
	// Pipe is the pipe an ingest key routes to.
	Pipe string
	// Views are the views a query key may read.
	Views map[string]bool
	// KeyID identifies the key for per-key bounds: derived from its digest, never the key.
	KeyID uint64
}

// CanQuery reports whether the principal may query view.
func (p *Principal) CanQuery(view string) bool { return p != nil && p.Views[view] }

type principalKey struct{}

// PrincipalFrom returns the caller authenticated by the interceptor, or nil.
func PrincipalFrom(ctx context.Context) *Principal {
	p, _ := ctx.Value(principalKey{}).(*Principal)
	return p
}

// WithPrincipal returns ctx carrying p (for in-process callers and tests).
func WithPrincipal(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// Keys resolves API keys to principals. A reload replaces the whole table at once (Replace):
// a call is authenticated against the old keys or the new ones, never a mix.
type Keys struct {
	t atomic.Pointer[keyTable]
}

// keyTable holds SHA-256 digests of the keys, never a key: a configuration may give only the
// digest (sha256:), and a memory dump or a heap profile reveals no key. An incoming key is
// hashed first, so the caller picks no byte that is compared; its bucket is found by the
// digest's first 8 bytes and the whole digest compared in constant time, so how long a refusal
// takes says nothing of how close a guess came.
type keyTable struct {
	ingest map[uint64][]ingestKey
	query  map[uint64][]queryKey
	admin  map[uint64][]config.Digest
}

type ingestKey struct {
	d    config.Digest
	pipe string
}

type queryKey struct {
	d     config.Digest
	views map[string]bool
}

// NewKeys indexes the keys of ks (config.Config.Keys).
func NewKeys(ks config.KeySet) *Keys {
	k := &Keys{}
	k.Replace(ks)
	return k
}

// Replace makes the keys of ks the ones in force.
func (k *Keys) Replace(ks config.KeySet) { k.t.Store(newKeyTable(ks)) }

func newKeyTable(ks config.KeySet) *keyTable {
	t := &keyTable{ingest: map[uint64][]ingestKey{}, query: map[uint64][]queryKey{}, admin: map[uint64][]config.Digest{}}
	for d, pipe := range ks.Ingest {
		t.ingest[bucket(d)] = append(t.ingest[bucket(d)], ingestKey{d: d, pipe: pipe})
	}
	for d, views := range ks.Query {
		t.query[bucket(d)] = append(t.query[bucket(d)], queryKey{d: d, views: views})
	}
	for d := range ks.Admin {
		t.admin[bucket(d)] = append(t.admin[bucket(d)], d)
	}
	return t
}

func bucket(d config.Digest) uint64 { return binary.BigEndian.Uint64(d[:8]) }

func same(a, b config.Digest) bool { return subtle.ConstantTimeCompare(a[:], b[:]) == 1 }

func (t *keyTable) ingestPipe(d config.Digest) (string, bool) {
	for _, e := range t.ingest[bucket(d)] {
		if same(e.d, d) {
			return e.pipe, true
		}
	}
	return "", false
}

func (t *keyTable) queryViews(d config.Digest) (map[string]bool, bool) {
	for _, e := range t.query[bucket(d)] {
		if same(e.d, d) {
			return e.views, true
		}
	}
	return nil, false
}

func (t *keyTable) isAdmin(d config.Digest) bool {
	for _, a := range t.admin[bucket(d)] {
		if same(a, d) {
			return true
		}
	}
	return false
}

// methodKind says which key class a method needs; KindNone methods (health, reflection) are
// open so grpcurl and load balancers work without a key.
func methodKind(fullMethod string) Kind {
	switch {
	case strings.HasPrefix(fullMethod, "/fustor.v1.SessionService/"), strings.HasPrefix(fullMethod, "/fustor.v1.PushService/"):
		return KindIngest
	case strings.HasPrefix(fullMethod, "/fustor.v1.ViewService/"):
		return KindQuery
	case strings.HasPrefix(fullMethod, "/fustor.v1.AdminService/"):
		return KindAdmin
	}
	return KindNone
}

func (k *Keys) authenticate(ctx context.Context, fullMethod string) (context.Context, error) {
	kind := methodKind(fullMethod)
	if kind == KindNone {
		return ctx, nil
	}
	key := keyFromMetadata(ctx)
	if key == "" {
		return nil, status.Error(codes.Unauthenticated, "missing API key: send metadata \"authorization: Bearer <key>\" or \"x-api-key: <key>\"")
	}
	d := config.KeyDigest(key)
	p := &Principal{Kind: kind}
	ok := false
	t := k.t.Load()
	switch kind {
	case KindIngest:
		p.Pipe, ok = t.ingestPipe(d)
	case KindQuery:
		if p.Views, ok = t.queryViews(d); !ok && fullMethod == verifyMethod && t.isAdmin(d) {
			// An operator proves a view with the admin key too.
			p.Kind, ok = KindAdmin, true
		}
	case KindAdmin:
		ok = t.isAdmin(d)
	}
	if !ok {
		return nil, status.Errorf(codes.Unauthenticated, "invalid API key for %s", serviceName(fullMethod))
	}
	p.KeyID = keyID(d)
	return WithPrincipal(ctx, p), nil
}

// keyID names a key for per-key bounds: stable for the key, and neither the key nor a part
// of its digest (which a sha256: setting shows), as it is hashed again under its own label.
func keyID(d config.Digest) uint64 {
	h := sha256.New()
	_, _ = h.Write([]byte("fustor key id\x00"))
	_, _ = h.Write(d[:])
	return binary.BigEndian.Uint64(h.Sum(nil)[:8])
}

// verifyMethod accepts a query key of the view or an admin key.
const verifyMethod = "/fustor.v1.ViewService/Verify"

func serviceName(fullMethod string) string {
	s := strings.TrimPrefix(fullMethod, "/")
	if i := strings.IndexByte(s, '/'); i >= 0 {
		return s[:i]
	}
	return s
}

func keyFromMetadata(ctx context.Context) string {
	md, _ := metadata.FromIncomingContext(ctx)
	for _, v := range md.Get("authorization") {
		if after, ok := strings.CutPrefix(v, "Bearer "); ok {
			return strings.TrimSpace(after)
		}
	}
	if v := md.Get("x-api-key"); len(v) > 0 {
		return strings.TrimSpace(v[0])
	}
	return ""
}

func (k *Keys) unary() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		ctx, err := k.authenticate(ctx, info.FullMethod)
		if err != nil {
			return nil, err
		}
		return h(ctx, req)
	}
}

func (k *Keys) stream() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		ctx, err := k.authenticate(ss.Context(), info.FullMethod)
		if err != nil {
			return err
		}
		return h(srv, &ctxStream{ServerStream: ss, ctx: ctx})
	}
}

type ctxStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *ctxStream) Context() context.Context { return s.ctx }
