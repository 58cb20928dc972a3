//! The Permit2 and x402 upto proxy calls `upto` needs.

#![allow(missing_docs)]

alloy::sol! {
    /// Permit2's unordered nonce bitmap.
    interface IPermit2 {
        function nonceBitmap(address owner, uint256 wordPos) external view returns (uint256);
    }

    /// The x402 upto proxy's `settle`.
    interface IUptoPermit2Proxy {
        struct TokenPermissions { address token; uint256 amount; }
        struct PermitTransferFrom { TokenPermissions permitted; uint256 nonce; uint256 deadline; }
        struct Witness { address to; address facilitator; uint256 validAfter; }
        function settle(PermitTransferFrom permit, uint256 amount, address owner, Witness witness, bytes signature) external;
    }
}
