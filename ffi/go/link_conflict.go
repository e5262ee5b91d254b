//go:build dlm_intree && dlm_dynamic

package dlm

// dlm_intree links the repository's libdlm.a statically; it does not
// combine with dlm_dynamic. This declaration fails the build to say so.
var _ int = "the build tags dlm_intree and dlm_dynamic do not combine: dlm_intree links target/release/libdlm.a statically"
