// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity ^0.8.24;

import {Permit2StandIn} from "./Permit2StandIn.sol";

/// @title UptoPermit2ProxyStandIn
/// @notice TEST-ONLY stand-in for the x402 `x402UptoPermit2Proxy` (canonical address
/// 0x4020A4f3b7b90ccA423B9fabCc0CE57C6C240002, absent on anvil), written from the ABI and the
/// EIP-712 witness type that the npm package x402/evm 2.27.0 ships; no third-party code was copied. It is not
/// audited. It has no storage: an `anvil_setCode` at the canonical address installs it; it calls
/// Permit2 at its canonical address (install Permit2StandIn there).
///
/// `settle` moves `amount` (at most the signed maximum) from `owner` to `witness.to` through
/// Permit2's `permitWitnessTransferFrom`, the witness binding the payee, the one facilitator
/// allowed to settle (`msg.sender`) and the earliest time. Not implemented: `settleWithPermit`
/// (EIP-2612 gas sponsoring), which the tests do not use.
contract UptoPermit2ProxyStandIn {
    struct Witness {
        address to;
        address facilitator;
        uint256 validAfter;
    }

    address public constant PERMIT2 = 0x000000000022D473030F116dDEE9F6B43aC78BA3;
    string public constant WITNESS_TYPE_STRING =
        "Witness witness)TokenPermissions(address token,uint256 amount)Witness(address to,address facilitator,uint256 validAfter)";
    bytes32 public constant WITNESS_TYPEHASH = keccak256("Witness(address to,address facilitator,uint256 validAfter)");

    event Settled();

    error AmountExceedsPermitted();
    error InvalidDestination();
    error InvalidOwner();
    error PaymentTooEarly();
    error UnauthorizedFacilitator();

    function settle(
        Permit2StandIn.PermitTransferFrom calldata permit,
        uint256 amount,
        address owner,
        Witness calldata witness,
        bytes calldata signature
    ) external {
        if (msg.sender != witness.facilitator) revert UnauthorizedFacilitator();
        if (owner == address(0)) revert InvalidOwner();
        if (witness.to == address(0)) revert InvalidDestination();
        if (block.timestamp < witness.validAfter) revert PaymentTooEarly();
        if (amount > permit.permitted.amount) revert AmountExceedsPermitted();
        bytes32 witnessHash = keccak256(abi.encode(WITNESS_TYPEHASH, witness.to, witness.facilitator, witness.validAfter));
        Permit2StandIn(PERMIT2).permitWitnessTransferFrom(
            permit, Permit2StandIn.SignatureTransferDetails(witness.to, amount), owner, witnessHash, WITNESS_TYPE_STRING, signature
        );
        emit Settled();
    }
}
