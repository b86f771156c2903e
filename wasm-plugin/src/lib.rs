//! Host-ABI shells over policy-core (filled in by the Envoy and admission issues).
