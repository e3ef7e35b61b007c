package controller

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/chatdr/chatdr/controller/engine"
	"github.com/chatdr/chatdr/controller/plan"
	"github.com/chatdr/chatdr/controller/store"
)

func TestRunErr_codes(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("run run-3 step F4b: %w", err) }
	tests := []struct {
		err  error
		want codes.Code
	}{
		{wrap(store.ErrRunNotFound), codes.NotFound},
		{wrap(plan.ErrUnknownPool), codes.NotFound},
		{wrap(engine.ErrDuplicateApprover), codes.AlreadyExists},
		{fmt.Errorf("x: %w: %w", store.ErrForbidden, engine.ErrNotApprover), codes.PermissionDenied},
		{wrap(store.ErrForbidden), codes.PermissionDenied},
		{wrap(store.ErrRunActive), codes.FailedPrecondition},
		{wrap(store.ErrNotAcknowledged), codes.FailedPrecondition},
		{wrap(engine.ErrNotWaitingApproval), codes.FailedPrecondition},
		{wrap(&engine.TransitionError{}), codes.FailedPrecondition},
		{wrap(engine.ErrInvalidTransition), codes.FailedPrecondition},
		{wrap(store.ErrBadRun), codes.InvalidArgument},
		{wrap(plan.ErrBadRequest), codes.InvalidArgument},
		{wrap(plan.ErrRefused), codes.FailedPrecondition},
		{wrap(context.Canceled), codes.Canceled},
		{errors.New("disk on fire"), codes.Internal},
		{status.Error(codes.Unavailable, "kept"), codes.Unavailable},
	}
	for _, tt := range tests {
		t.Run(tt.err.Error(), func(t *testing.T) {
			got := runErr(tt.err)
			st, ok := status.FromError(got)
			require.True(t, ok)
			require.Equal(t, tt.want, st.Code())
			if _, isStatus := status.FromError(tt.err); !isStatus {
				require.Contains(t, st.Message(), tt.err.Error(), "the message keeps what the store said")
			}
		})
	}
	require.NoError(t, runErr(nil))
}
