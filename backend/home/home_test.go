package home

import "testing"

func TestHere(t *testing.T) {
	r := Rule{Name: "Backend1.example"}
	for tohost, want := range map[string]bool{
		"backend1.example":     true,
		"BACKEND1.EXAMPLE.":    true,
		"backend1.example:24":  true,
		" backend1.example ":   true,
		"backend2.example":     false,
		"backend1.example.org": false,
		"":                     false,
		"[2001:db8::1]:143":    false,
	} {
		if got := r.Here(tohost); got != want {
			t.Errorf("Here(%q) = %v, want %v", tohost, got, want)
		}
	}
	peers := Rule{Name: "b1.example", Peers: []string{"b2.example:2424", " B3.example "}}
	for tohost, want := range map[string]bool{
		"b1.example": true, "b2.example": true, "b3.example.:143": true, "b4.example": false, "": false,
	} {
		if got := peers.Here(tohost); got != want {
			t.Errorf("with peers: Here(%q) = %v, want %v", tohost, got, want)
		}
	}
	if !(Rule{AcceptDefault: true}).Here("") {
		t.Error("AcceptDefault does not claim users without tohost")
	}
	v6 := Rule{Name: "2001:db8:0::1"}
	for _, tohost := range []string{"2001:db8::1", "[2001:db8::1]", "[2001:db8::1]:24"} {
		if !v6.Here(tohost) {
			t.Errorf("%q is not %q", tohost, v6.Name)
		}
	}
}
