//go:build dlm_dynamic && !dlm_intree

package dlm_test

// linkMode is how this build links libdlm (see link_dynamic.go).
const linkMode = "dynamic"
