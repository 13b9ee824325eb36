package arm

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/privlink/privlink/internal/store"
	"github.com/privlink/privlink/internal/store/bolt"
)

func TestDocKeyRoundTrip(t *testing.T) {
	for _, s := range []string{
		"/subscriptions/S1/resourceGroups/RG",
		"/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/V",
		"/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v/subnets/Sub",
		"/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Network/privateDnsZones/a.b.c/A/@",
	} {
		id, err := ParseID(s)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := ParseDocKey(DocKey(id))
		if !ok || !got.Equal(id) {
			t.Errorf("ParseDocKey(DocKey(%s)) = %s, %v", s, got, ok)
		}
		if DocKey(got) != DocKey(id) {
			t.Errorf("key of parsed %s differs", s)
		}
	}
	for _, k := range []string{"ops/x", "arm/s", "arm/s/microsoft.network:virtualnetworks/rg", "arm/s/microsoft.network:virtualnetworks:subnets/rg/v"} {
		if _, ok := ParseDocKey(k); ok {
			t.Errorf("ParseDocKey(%q) accepted a non-document key", k)
		}
	}
}

func TestParseIDForms(t *testing.T) {
	cases := map[string]string{
		"/SUBSCRIPTIONS/s/RESOURCEGROUPS/rg/PROVIDERS/Microsoft.Network/virtualNetworks/v":                                                     "Microsoft.Network/virtualNetworks",
		"/subscriptions/s/resourcegroups/rg/providers/Microsoft.Network/virtualNetworks/v/subnets":                                             "Microsoft.Network/virtualNetworks/subnets",
		"/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v/providers/Microsoft.Authorization/roleAssignments/x": "Microsoft.Authorization/roleAssignments",
		"/subscriptions/s/resources": "Microsoft.Resources/resources",
	}
	for path, typ := range cases {
		id, err := ParseID(path)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if id.Type() != typ {
			t.Errorf("%s: type %s, want %s", path, id.Type(), typ)
		}
	}
	ext, _ := ParseID("/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v/providers/Microsoft.Authorization/roleAssignments/x")
	if ext.Scope == nil || ext.Scope.String() != "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v" {
		t.Errorf("extension scope = %v", ext.Scope)
	}
	if !ScopeContains("/subscriptions/s/resourceGroups/RG", "/subscriptions/s/resourcegroups/rg/providers/x/y/z") ||
		ScopeContains("/subscriptions/s/resourceGroups/rg", "/subscriptions/s/resourceGroups/rg2") {
		t.Error("ScopeContains does not compare whole segments case-insensitively")
	}
	for _, bad := range []string{"/foo/bar", "/subscriptions", "/subscriptions/s/resourceGroups/rg/widgets/x"} {
		if _, err := ParseID(bad); err == nil {
			t.Errorf("ParseID(%q) accepted", bad)
		}
	}
}

func TestOperationsLifecycle(t *testing.T) {
	st, err := bolt.Open(filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	id, _ := ParseID("/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkInterfaces/n")
	var pending, done *Operation
	if _, err := st.Txn(ctx, func(tx store.Tx) error {
		var err error
		if pending, err = StartOperation(tx, id, "westeurope", false); err != nil {
			return err
		}
		done, err = StartOperation(tx, id, "westeurope", true)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	// Progress reaches the pending operation only, and 100 on success.
	if _, err := st.Txn(ctx, func(tx store.Tx) error { return ReportProgress(tx, id, 42) }); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		op   *Operation
		want *float64
	}{{pending, ptrTo(42.0)}, {done, nil}} {
		op, err := GetOperation(ReadOnly(ctx, st), c.op.Name)
		if err != nil || (op.PercentComplete == nil) != (c.want == nil) || (c.want != nil && *op.PercentComplete != *c.want) {
			t.Errorf("operation %s (done %v) after ReportProgress(42): %v, %v", c.op.Name, c.op.Done(), op.PercentComplete, err)
		}
	}
	if _, err := st.Txn(ctx, func(tx store.Tx) error { return FinishOperations(tx, id, nil) }); err != nil {
		t.Fatal(err)
	}
	op, err := GetOperation(ReadOnly(ctx, st), pending.Name)
	if err != nil || op.Status != OpSucceeded || op.EndTime == nil || op.PercentComplete == nil || *op.PercentComplete != 100 {
		t.Fatalf("pending operation after FinishOperations: %+v, %v", op, err)
	}
	if kvs, _, _ := st.List(ctx, opPending); len(kvs) != 0 {
		t.Errorf("pending index keeps %d keys", len(kvs))
	}
	if n, err := PruneOperations(ctx, st, time.Now().Add(-time.Hour)); err != nil || n != 0 {
		t.Errorf("prune of fresh operations removed %d (%v)", n, err)
	}
	if n, err := PruneOperations(ctx, st, time.Now().Add(time.Second)); err != nil || n != 2 {
		t.Errorf("prune removed %d, want 2 (%v)", n, err)
	}
	if _, err := GetOperation(ReadOnly(ctx, st), done.Name); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("pruned operation still readable: %v", err)
	}
}

func ptrTo[T any](v T) *T { return &v }
