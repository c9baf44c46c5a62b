package server

import (
	"context"
	"crypto/subtle"
	"hash/fnv"
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
	// KeyID identifies the key (a hash, never the key) for per-key bounds.
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

type keyTable struct {
	ingest map[string]string
	query  map[string]map[string]bool
	admin  []string
}

// NewKeys indexes the keys of cfg.
func NewKeys(cfg *config.Config) *Keys {
	k := &Keys{}
	k.Replace(cfg)
	return k
}

// Replace makes the keys of cfg the ones in force.
func (k *Keys) Replace(cfg *config.Config) { k.t.Store(newKeyTable(cfg)) }

func newKeyTable(cfg *config.Config) *keyTable {
	k := &keyTable{ingest: map[string]string{}, query: map[string]map[string]bool{}, admin: cfg.Server.AdminKeys}
	for _, r := range cfg.Receivers {
		for _, ak := range r.APIKeys {
			k.ingest[ak.Key] = ak.Pipe
		}
	}
	for name, v := range cfg.Views {
		for _, key := range v.QueryKeys {
			if k.query[key] == nil {
				k.query[key] = map[string]bool{}
			}
			k.query[key][name] = true
		}
	}
	return k
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
	p := &Principal{Kind: kind, KeyID: keyID(key)}
	ok := false
	t := k.t.Load()
	switch kind {
	case KindIngest:
		p.Pipe, ok = t.ingest[key]
	case KindQuery:
		if p.Views, ok = t.query[key]; !ok && fullMethod == verifyMethod && t.isAdmin(key) {
			// An operator proves a view with the admin key too.
			p.Kind, ok = KindAdmin, true
		}
	case KindAdmin:
		ok = t.isAdmin(key)
	}
	if !ok {
		return nil, status.Errorf(codes.Unauthenticated, "invalid API key for %s", serviceName(fullMethod))
	}
	return WithPrincipal(ctx, p), nil
}

// keyID hashes a key for per-key bounds, so no key is kept in a principal.
func keyID(key string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(key))
	return h.Sum64()
}

// verifyMethod accepts a query key of the view or an admin key.
const verifyMethod = "/fustor.v1.ViewService/Verify"

func (k *keyTable) isAdmin(key string) bool {
	ok := false
	for _, a := range k.admin {
		if subtle.ConstantTimeCompare([]byte(a), []byte(key)) == 1 {
			ok = true
		}
	}
	return ok
}

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
