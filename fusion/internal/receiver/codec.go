package receiver

import (
	"fmt"

	"google.golang.org/grpc/encoding"
	// The default "proto" codec, registered before this package's init wraps it.
	_ "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/fustor/fustor/fusion/internal/errs"
	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
)

// A push message that does not unmarshal (bytes that are no PushRequest, a string that is not
// UTF-8) is the client's fault, INVALID_ARGUMENT (issue 22). grpc-go answers a failed
// unmarshal itself, INTERNAL, whatever the handler returns after; so the "proto" codec is
// wrapped: a PushRequest that fails to unmarshal is handed to the handler empty, carrying
// the error in an unknown field of the highest field number (which fustor.v1 never uses),
// and the handler ends the stream with INVALID_ARGUMENT (undecodable). Every other message
// and every other outcome is the default codec's own.
//
// Codec is given to Fusion's gRPC server alone (grpc.ForceServerCodecV2), not registered
// process-wide: clients in the same process keep the default codec.
func Codec() encoding.CodecV2 { return pushCodec{base: encoding.GetCodecV2("proto")} }

// undecodableField is the unknown field that carries the unmarshal error.
const undecodableField = protowire.MaxValidNumber

type pushCodec struct{ base encoding.CodecV2 }

func (c pushCodec) Marshal(v any) (mem.BufferSlice, error) { return c.base.Marshal(v) }
func (c pushCodec) Name() string                           { return c.base.Name() }

func (c pushCodec) Unmarshal(data mem.BufferSlice, v any) error {
	err := c.base.Unmarshal(data, v)
	m, ok := v.(*fustorv1.PushRequest)
	if err == nil || !ok {
		return err
	}
	proto.Reset(m)
	why := err.Error()
	if len(why) > 160 {
		why = why[:160] + "…"
	}
	m.ProtoReflect().SetUnknown(protowire.AppendString(protowire.AppendTag(nil, undecodableField, protowire.BytesType), why))
	return nil
}

// undecodable returns the error of a message the codec could not unmarshal (nil for any
// other), for the stream to end with.
func undecodable(m *fustorv1.PushRequest) error {
	raw := m.ProtoReflect().GetUnknown()
	if len(raw) == 0 {
		return nil
	}
	for len(raw) > 0 {
		num, typ, n := protowire.ConsumeTag(raw)
		if n < 0 {
			return nil
		}
		raw = raw[n:]
		if num == undecodableField && typ == protowire.BytesType {
			why, _ := protowire.ConsumeString(raw)
			return fmt.Errorf("%w: a message is not a valid fustor.v1.PushRequest (%s)", errs.ErrInvalidArgument, why)
		}
		if n = protowire.ConsumeFieldValue(num, typ, raw); n < 0 {
			return nil
		}
		raw = raw[n:]
	}
	return nil
}
