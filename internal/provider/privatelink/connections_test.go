package privatelink

import (
	"testing"

	"github.com/privlink/privlink/internal/arm"
)

func TestTransition(t *testing.T) {
	k := &Kind{Type: "Microsoft.Test/targets", Noun: "target"}
	c := &arm.Caller{ClientID: "app"}
	pending, approved, rejected := k.AwaitingApproval("m"), AutoApproved(), ConnectionState{StatusRejected, "no", actionsReRequest}
	desc := "custom"
	for _, tc := range []struct {
		cur      ConnectionState
		status   string
		desc     *string
		want     string // description, or "" for an error
		wantActs string
	}{
		{pending, StatusApproved, nil, "Approved by app", actionsNone},
		{pending, StatusRejected, nil, "Rejected by app", actionsReRequest},
		{pending, StatusRejected, &desc, "custom", actionsReRequest},
		{pending, StatusPending, nil, pending.Description, pending.ActionsRequired},
		{approved, StatusRejected, nil, "Rejected by app", actionsReRequest},
		{approved, StatusApproved, nil, "Auto-Approved", actionsNone},
		{approved, StatusApproved, &desc, "custom", actionsNone},
		{approved, StatusPending, nil, "", ""},
		{rejected, StatusApproved, nil, "", ""},
		{rejected, StatusPending, nil, "", ""},
		{rejected, StatusRejected, nil, "no", actionsReRequest},
	} {
		got, err := k.transition(tc.cur, tc.status, tc.desc, nil, c)
		switch {
		case tc.want == "" && err == nil:
			t.Errorf("%s → %s: no error", tc.cur.Status, tc.status)
		case tc.want != "" && (err != nil || got.Status != tc.status || got.Description != tc.want || got.ActionsRequired != tc.wantActs):
			t.Errorf("%s → %s = %+v %v", tc.cur.Status, tc.status, got, err)
		}
	}
}
