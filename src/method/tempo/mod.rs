//! The Tempo payment method (`method="tempo"`): payment-channel sessions and charges.
//! (Being written.)
