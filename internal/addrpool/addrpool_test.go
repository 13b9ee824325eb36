package addrpool_test

import (
	"context"
	"errors"
	"net/netip"
	"path/filepath"
	"testing"

	"github.com/privlink/privlink/internal/addrpool"
	"github.com/privlink/privlink/internal/store"
	"github.com/privlink/privlink/internal/store/bolt"
)

func TestPool(t *testing.T) {
	st, err := bolt.Open(filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	small := addrpool.Pool{Range: netip.MustParsePrefix("198.18.1.0/29"),
		Skip: []netip.Prefix{netip.MustParsePrefix("198.18.1.4/31")}, Exclude: []netip.Addr{netip.MustParseAddr("198.18.1.2"), netip.MustParseAddr("198.18.1.7")}}
	var got []string
	_, err = st.Txn(context.Background(), func(tx store.Tx) error {
		got = got[:0]
		used, err := addrpool.Used(tx)
		if err != nil {
			return err
		}
		for range 3 {
			a, err := small.Allocate(tx, "/subscriptions/s/x/A", used)
			if err != nil {
				return err
			}
			got = append(got, a.String())
		}
		// .0 is skipped, .2 and .7 excluded, .4-.5 skipped: .1 .3 .6, then full.
		if _, err := small.Allocate(tx, "/other", used); !errors.Is(err, addrpool.ErrFull) {
			t.Errorf("fourth allocation: %v, want ErrFull", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"198.18.1.1", "198.18.1.3", "198.18.1.6"}; len(got) != 3 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Fatalf("allocated %v, want %v", got, want)
	}
	// Another pool over the same key space sees them; release frees them
	// by holder, case-insensitively.
	_, err = st.Txn(context.Background(), func(tx store.Tx) error {
		used, err := addrpool.Used(tx)
		if err != nil {
			return err
		}
		wide := addrpool.Pool{Range: netip.MustParsePrefix("198.18.1.0/28")}
		a, err := wide.Allocate(tx, "/b", used)
		if err != nil || a.String() != "198.18.1.2" {
			t.Errorf("wide pool after small: %v %v", a, err)
		}
		if h, err := addrpool.Holder(tx, netip.MustParseAddr("198.18.1.3")); err != nil || h != "/subscriptions/s/x/A" {
			t.Errorf("holder = %q %v", h, err)
		}
		if err := addrpool.Release(tx, "/SUBSCRIPTIONS/s/x/a"); err != nil {
			return err
		}
		used, err = addrpool.Used(tx)
		if err != nil {
			return err
		}
		if len(used) != 1 || !used[netip.MustParseAddr("198.18.1.2")] {
			t.Errorf("after release: %v", used)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
