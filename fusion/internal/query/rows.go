package query

import (
	"context"
	"encoding/base64"
	"fmt"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/fustor/fustor/fusion/internal/errs"
	"github.com/fustor/fustor/fusion/internal/server"
	"github.com/fustor/fustor/fusion/internal/view"
	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
)

// Rows views (driver rows): GetRow and ListRows read a member's RowsDriver. The path queries
// above refuse a rows view in open; these refuse an fs or forest view.

// openRows resolves, authorises and readiness-checks a rows view's only member.
func (s *Service) openRows(ctx context.Context, name string) (*view.View, *view.Member, error) {
	if name == "" {
		return nil, nil, fmt.Errorf("%w: view is required", errs.ErrInvalidArgument)
	}
	v, err := s.views.Get(name)
	if err != nil {
		return nil, nil, err
	}
	if !server.PrincipalFrom(ctx).CanQuery(name) {
		return nil, nil, fmt.Errorf("%w: the API key may not query view %q", errs.ErrPermission, name)
	}
	if !v.IsRows() {
		return nil, nil, fmt.Errorf("%w: view %q has driver %s (schema %q): GetRow and ListRows read rows views (driver rows); use Stat, ListDirectory or Find",
			errs.ErrPrecondition, name, v.Cfg.Driver, v.Cfg.Schema)
	}
	m := v.Members()[0]
	if err := m.Ready(); err != nil {
		return nil, nil, err
	}
	return v, m, nil
}

// rowsMeta is a rows view's ViewMeta: its readiness, and as watermark the last change applied.
func rowsMeta(v *view.View, m *view.Member) *fustorv1.ViewMeta {
	st, rs := m.State(), m.Rows.Stats()
	out := &fustorv1.ViewMeta{View: v.Name, AuthoritativeSession: st.Leader != "", SnapshotComplete: st.SnapshotComplete,
		Watermark: timestamppb.New(time.Unix(0, rs.LastChangeNs))}
	out.Restored, out.CheckpointTime = restoredOf(st)
	out.Stale, out.StaleSince = staleOf(st)
	return out
}

// RowStatsOf converts a rows driver's figures to the wire's.
func RowStatsOf(rs view.RowStats) *fustorv1.RowStats {
	return &fustorv1.RowStats{Rows: uint64(rs.Rows), Tombstones: uint64(rs.Tombstones), LastIndex: rs.LastIndex,
		Applied: rs.Applied, Stale: rs.Stale, Rejected: rs.Rejected, BlindSpotDeletions: rs.BlindSpotDeletions}
}

func rowOf(r view.StoredRow) *fustorv1.Row {
	return &fustorv1.Row{Key: r.Key, Fields: r.Fields, Index: r.Index, Origin: sourceOf(r.Origin),
		UpdatedAt: timestamppb.New(time.Unix(0, r.UpdatedNs))}
}

func sourceOf(o view.Origin) fustorv1.MessageSource {
	switch o {
	case view.OriginRealtime:
		return fustorv1.MessageSource_MESSAGE_SOURCE_REALTIME
	case view.OriginSnapshot:
		return fustorv1.MessageSource_MESSAGE_SOURCE_SNAPSHOT
	case view.OriginAudit:
		return fustorv1.MessageSource_MESSAGE_SOURCE_AUDIT
	case view.OriginOnDemand:
		return fustorv1.MessageSource_MESSAGE_SOURCE_ON_DEMAND
	}
	return fustorv1.MessageSource_MESSAGE_SOURCE_UNSPECIFIED
}

// GetRow returns one row of a rows view.
func (s *Service) GetRow(ctx context.Context, req *fustorv1.GetRowRequest) (*fustorv1.GetRowResponse, error) {
	v, m, err := s.openRows(ctx, req.GetView())
	if err != nil {
		return nil, err
	}
	if req.GetKey() == "" {
		return nil, fmt.Errorf("%w: key is required", errs.ErrInvalidArgument)
	}
	r, err := m.Rows.Get(req.GetKey())
	if err != nil {
		return nil, fmt.Errorf("get row of view %q: %w", v.Name, err)
	}
	return &fustorv1.GetRowResponse{Meta: rowsMeta(v, m), Row: rowOf(r)}, nil
}

// ListRows lists one page of a rows view's rows, in key order.
func (s *Service) ListRows(ctx context.Context, req *fustorv1.ListRowsRequest) (*fustorv1.ListRowsResponse, error) {
	v, m, err := s.openRows(ctx, req.GetView())
	if err != nil {
		return nil, err
	}
	size := pageSize(req.GetPageSize())
	after, err := decodeRowToken(req.GetPageToken())
	if err != nil {
		return nil, err
	}
	if req.GetWhereField() == "" && req.GetWhereValue() != "" {
		return nil, fmt.Errorf("%w: where_value is set without where_field", errs.ErrInvalidArgument)
	}
	f := view.RowFilter{Field: req.GetWhereField(), Value: req.GetWhereValue()}
	page, err := m.Rows.List(ctx, req.GetPrefix(), after, f, view.Limit{Entries: size, Bytes: answerBytes(v)})
	if err != nil {
		return nil, err
	}
	out := &fustorv1.ListRowsResponse{Meta: rowsMeta(v, m), NextPageToken: encodeToken(page.Next), Stats: RowStatsOf(m.Rows.Stats())}
	out.Rows = make([]*fustorv1.Row, len(page.Rows))
	for i, r := range page.Rows {
		out.Rows[i] = rowOf(r)
	}
	return out, nil
}

// decodeRowToken reads a ListRows page token: the last key examined.
func decodeRowToken(tok string) (string, error) {
	if tok == "" {
		return "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(b) == 0 || !utf8.Valid(b) {
		return "", fmt.Errorf("%w: page_token is not one this server issued", errs.ErrInvalidArgument)
	}
	return string(b), nil
}
