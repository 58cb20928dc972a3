// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity ^0.8.24;

/// @title StreamChannelEscrow
/// @notice tollgate's own test implementation of the MPP "v1" (legacy) Tempo payment-channel escrow.
///
/// Its external ABI (functions, events, errors) equals the deployed v1 escrow ABI that the mppx
/// `sessionLegacy` client speaks (mppx `tempo/legacy/session/escrow.abi`). It was written from that
/// ABI and the MPP session spec; no third-party contract code was copied.
///
/// * channelId = keccak256(abi.encode(payer, payee, token, salt, authorizedSigner, address(this), block.chainid))
/// * Vouchers are EIP-712 `Voucher(bytes32 channelId,uint128 cumulativeAmount)` under the domain
///   {name: "Tempo Stream Channel", version: "1", chainId, verifyingContract: this}, signed by
///   `authorizedSigner`, or by the payer when `authorizedSigner` is zero. Only 65-byte r||s||v
///   signatures with v in {27, 28} and low s are accepted.
/// * The payee settles (`settle`) or closes (`close`) with the latest voucher. The payer can force a
///   close: `requestClose`, wait `CLOSE_GRACE_PERIOD`, then `withdraw`.
/// * `ChannelClosed.settledToPayee` is the channel's total settled amount at finalization and
///   `refundedToPayer` is what went back to the payer, so the two always add up to the deposit.
///
/// The contract has no constructor arguments and no immutables (the EIP-712 domain separator is
/// computed on the fly), so its runtime bytecode can be placed at any address with `anvil_setCode`.
/// It is for tests only and not audited.
contract StreamChannelEscrow {
    struct Channel {
        bool finalized;
        uint64 closeRequestedAt;
        address payer;
        address payee;
        address token;
        address authorizedSigner;
        uint128 deposit;
        uint128 settled;
    }

    uint64 public constant CLOSE_GRACE_PERIOD = 15 minutes;

    bytes32 public constant VOUCHER_TYPEHASH = keccak256("Voucher(bytes32 channelId,uint128 cumulativeAmount)");

    bytes32 private constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    bytes32 private constant NAME_HASH = keccak256("Tempo Stream Channel");
    bytes32 private constant VERSION_HASH = keccak256("1");

    /// secp256k1n / 2: signatures with a larger `s` are malleable and rejected.
    uint256 private constant MAX_LOW_S = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0;

    mapping(bytes32 => Channel) public channels;

    event ChannelOpened(
        bytes32 indexed channelId,
        address indexed payer,
        address indexed payee,
        address token,
        address authorizedSigner,
        bytes32 salt,
        uint256 deposit
    );
    event Settled(
        bytes32 indexed channelId,
        address indexed payer,
        address indexed payee,
        uint256 cumulativeAmount,
        uint256 deltaPaid,
        uint256 newSettled
    );
    event TopUp(
        bytes32 indexed channelId,
        address indexed payer,
        address indexed payee,
        uint256 additionalDeposit,
        uint256 newDeposit
    );
    event CloseRequested(
        bytes32 indexed channelId, address indexed payer, address indexed payee, uint256 closeGraceEnd
    );
    event CloseRequestCancelled(bytes32 indexed channelId, address indexed payer, address indexed payee);
    event ChannelClosed(
        bytes32 indexed channelId,
        address indexed payer,
        address indexed payee,
        uint256 settledToPayee,
        uint256 refundedToPayer
    );
    /// Part of the deployed v1 ABI; this implementation never emits it (channels do not expire).
    event ChannelExpired(bytes32 indexed channelId, address indexed payer, address indexed payee);

    error AmountExceedsDeposit();
    error AmountNotIncreasing();
    error ChannelAlreadyExists();
    error ChannelFinalized();
    error ChannelNotFound();
    error CloseNotReady();
    error DepositOverflow();
    error InvalidPayee();
    error InvalidSignature();
    error NotPayee();
    error NotPayer();
    error TransferFailed();

    // ---------------------------------------------------------------- payer actions

    /// Opens a channel from `msg.sender` (the payer) and pulls `deposit` of `token` with
    /// `transferFrom`, so the payer must have approved this contract first.
    function open(address payee, address token, uint128 deposit, bytes32 salt, address authorizedSigner)
        external
        returns (bytes32 channelId)
    {
        if (payee == address(0)) revert InvalidPayee();
        channelId = computeChannelId(msg.sender, payee, token, salt, authorizedSigner);
        if (channels[channelId].payer != address(0)) revert ChannelAlreadyExists();

        channels[channelId] = Channel({
            finalized: false,
            closeRequestedAt: 0,
            payer: msg.sender,
            payee: payee,
            token: token,
            authorizedSigner: authorizedSigner,
            deposit: deposit,
            settled: 0
        });
        _pull(token, msg.sender, deposit);
        emit ChannelOpened(channelId, msg.sender, payee, token, authorizedSigner, salt, deposit);
    }

    /// Adds to the deposit (payer only). Also cancels a pending close request.
    function topUp(bytes32 channelId, uint256 additionalDeposit) external {
        Channel storage ch = _live(channelId);
        if (msg.sender != ch.payer) revert NotPayer();
        uint256 newDeposit = uint256(ch.deposit) + additionalDeposit;
        if (newDeposit > type(uint128).max) revert DepositOverflow();

        ch.deposit = uint128(newDeposit);
        if (ch.closeRequestedAt != 0) {
            ch.closeRequestedAt = 0;
            emit CloseRequestCancelled(channelId, ch.payer, ch.payee);
        }
        _pull(ch.token, msg.sender, additionalDeposit);
        emit TopUp(channelId, ch.payer, ch.payee, additionalDeposit, newDeposit);
    }

    /// Starts the forced-close grace period (payer only). Calling it again while pending is a no-op.
    function requestClose(bytes32 channelId) external {
        Channel storage ch = _live(channelId);
        if (msg.sender != ch.payer) revert NotPayer();
        if (ch.closeRequestedAt != 0) return;
        ch.closeRequestedAt = uint64(block.timestamp);
        emit CloseRequested(channelId, ch.payer, ch.payee, block.timestamp + CLOSE_GRACE_PERIOD);
    }

    /// After the grace period, refunds the unsettled deposit to the payer and finalizes (payer only).
    function withdraw(bytes32 channelId) external {
        Channel storage ch = _live(channelId);
        if (msg.sender != ch.payer) revert NotPayer();
        if (ch.closeRequestedAt == 0 || block.timestamp < uint256(ch.closeRequestedAt) + CLOSE_GRACE_PERIOD) {
            revert CloseNotReady();
        }
        _finalize(channelId, ch);
    }

    // ---------------------------------------------------------------- payee actions

    /// Pays the payee `cumulativeAmount - settled` against a signed voucher (payee only).
    function settle(bytes32 channelId, uint128 cumulativeAmount, bytes calldata signature) external {
        Channel storage ch = _live(channelId);
        if (msg.sender != ch.payee) revert NotPayee();
        if (cumulativeAmount <= ch.settled) revert AmountNotIncreasing();
        _settle(channelId, ch, cumulativeAmount, signature);
    }

    /// Cooperative close (payee only): settles the voucher amount when it is above what was already
    /// settled (the signature is only checked then), refunds the rest to the payer and finalizes.
    function close(bytes32 channelId, uint128 cumulativeAmount, bytes calldata signature) external {
        Channel storage ch = _live(channelId);
        if (msg.sender != ch.payee) revert NotPayee();
        if (cumulativeAmount > ch.settled) _settle(channelId, ch, cumulativeAmount, signature);
        _finalize(channelId, ch);
    }

    // ---------------------------------------------------------------- views

    function getChannel(bytes32 channelId) external view returns (Channel memory) {
        return channels[channelId];
    }

    function getChannelsBatch(bytes32[] calldata channelIds) external view returns (Channel[] memory channelStates) {
        channelStates = new Channel[](channelIds.length);
        for (uint256 i = 0; i < channelIds.length; i++) {
            channelStates[i] = channels[channelIds[i]];
        }
    }

    function computeChannelId(address payer, address payee, address token, bytes32 salt, address authorizedSigner)
        public
        view
        returns (bytes32)
    {
        return keccak256(abi.encode(payer, payee, token, salt, authorizedSigner, address(this), block.chainid));
    }

    function domainSeparator() public view returns (bytes32) {
        return keccak256(abi.encode(DOMAIN_TYPEHASH, NAME_HASH, VERSION_HASH, block.chainid, address(this)));
    }

    function getVoucherDigest(bytes32 channelId, uint128 cumulativeAmount) public view returns (bytes32) {
        bytes32 structHash = keccak256(abi.encode(VOUCHER_TYPEHASH, channelId, cumulativeAmount));
        return keccak256(abi.encodePacked("\x19\x01", domainSeparator(), structHash));
    }

    /// EIP-5267 domain description (fields 0x0f = name, version, chainId, verifyingContract).
    function eip712Domain()
        external
        view
        returns (
            bytes1 fields,
            string memory name,
            string memory version,
            uint256 chainId,
            address verifyingContract,
            bytes32 salt,
            uint256[] memory extensions
        )
    {
        return (hex"0f", "Tempo Stream Channel", "1", block.chainid, address(this), bytes32(0), new uint256[](0));
    }

    // ---------------------------------------------------------------- internals

    function _live(bytes32 channelId) private view returns (Channel storage ch) {
        ch = channels[channelId];
        if (ch.payer == address(0)) revert ChannelNotFound();
        if (ch.finalized) revert ChannelFinalized();
    }

    function _settle(bytes32 channelId, Channel storage ch, uint128 cumulativeAmount, bytes calldata signature)
        private
    {
        if (cumulativeAmount > ch.deposit) revert AmountExceedsDeposit();
        address signer = ch.authorizedSigner == address(0) ? ch.payer : ch.authorizedSigner;
        if (_recover(getVoucherDigest(channelId, cumulativeAmount), signature) != signer) revert InvalidSignature();

        uint128 delta = cumulativeAmount - ch.settled;
        ch.settled = cumulativeAmount;
        _push(ch.token, ch.payee, delta);
        emit Settled(channelId, ch.payer, ch.payee, cumulativeAmount, delta, cumulativeAmount);
    }

    function _finalize(bytes32 channelId, Channel storage ch) private {
        uint128 refund = ch.deposit - ch.settled;
        ch.finalized = true;
        ch.closeRequestedAt = 0;
        if (refund != 0) _push(ch.token, ch.payer, refund);
        emit ChannelClosed(channelId, ch.payer, ch.payee, ch.settled, refund);
    }

    /// ecrecover over a 65-byte r||s||v signature, v in {27, 28}, low s. Returns address(0) when invalid.
    function _recover(bytes32 digest, bytes calldata signature) private pure returns (address) {
        if (signature.length != 65) return address(0);
        bytes32 r = bytes32(signature[0:32]);
        bytes32 s = bytes32(signature[32:64]);
        uint8 v = uint8(signature[64]);
        if (uint256(s) > MAX_LOW_S || (v != 27 && v != 28)) return address(0);
        return ecrecover(digest, v, r, s);
    }

    function _pull(address token, address from, uint256 amount) private {
        _call(token, abi.encodeWithSignature("transferFrom(address,address,uint256)", from, address(this), amount));
    }

    function _push(address token, address to, uint256 amount) private {
        _call(token, abi.encodeWithSignature("transfer(address,uint256)", to, amount));
    }

    /// Calls a token and requires success plus either no return data or an ABI-encoded `true`.
    function _call(address token, bytes memory data) private {
        if (token.code.length == 0) revert TransferFailed();
        (bool ok, bytes memory ret) = token.call(data);
        if (!ok || (ret.length != 0 && !abi.decode(ret, (bool)))) revert TransferFailed();
    }
}
