//go:build dlm_intree

package dlm_test

// linkMode is how this build links libdlm (see link_intree.go).
const linkMode = "intree"
