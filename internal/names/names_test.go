package names

import (
	"testing"

	"github.com/privlink/privlink/internal/arm"
)

func TestNames(t *testing.T) {
	id, err := arm.ParseID("/subscriptions/s/resourceGroups/RG/providers/Microsoft.Network/networkInterfaces/Nic1")
	if err != nil {
		t.Fatal(err)
	}
	lower, _ := arm.ParseID("/subscriptions/s/resourcegroups/rg/providers/microsoft.network/networkinterfaces/nic1")
	if Key(id) != Key(lower) || len(Key(id)) != 16 {
		t.Errorf("Key is not a 16-digit hash of the lower-cased ID: %s %s", Key(id), Key(lower))
	}
	if got := Namespace("pl-", KindNIC, "abc"); got != "pl-nic-abc" {
		t.Errorf("Namespace = %s", got)
	}
	if got := Namespace("pl-", KindInternet, "ignored"); got != "pl-inet" {
		t.Errorf("internet Namespace = %s", got)
	}
	dir := t.TempDir()
	want := Runtime{NetnsPrefix: "pl-", ARMEndpoint: "https://127.0.0.1:8443", PID: 42}
	if err := WriteRuntime(dir, want); err != nil {
		t.Fatal(err)
	}
	if got, err := ReadRuntime(dir); err != nil || got != want {
		t.Errorf("ReadRuntime = %+v %v", got, err)
	}
	if _, err := ReadRuntime(t.TempDir()); err == nil {
		t.Error("ReadRuntime of an empty directory succeeded")
	}
}
