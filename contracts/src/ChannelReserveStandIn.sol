// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity ^0.8.24;

/// @title ChannelReserveStandIn
/// @notice TEST-ONLY stand-in for the TIP-1034 "TIP20 Channel Reserve" precompile that MPP "v2"
/// sessions use (canonical address 0x4D50500000000000000000000000000000000000, absent on anvil).
///
/// Its function and event signatures equal the precompile ABI that mppx ships
/// (`tempo/session/precompile/escrow.abi`), so an `anvil_setCode` of this runtime bytecode at the
/// canonical address lets the real v2 clients and servers run against a local chain. It was written
/// from that ABI and the MPP session spec; no third-party code was copied. It is not audited.
///
/// Where it differs from the real precompile, by necessity. TESTS MUST BRIDGE THESE:
///  1. Deposits are pulled with TIP-20 `transferFrom`, so the payer must first `approve` this
///     contract (the real precompile moves the tokens natively without an allowance).
///  2. A contract cannot see the `expiringNonceHash` of the transaction that calls it (the real chain
///     seeds it from the opening Tempo transaction). `open` therefore consumes the value that was
///     last stored with the test-only `setNextExpiringNonceHash(bytes32)`, which anyone may call,
///     and reverts with `ExpiringNonceHashNotSet` when none is pending. A test computes the hash
///     the way a server does (keccak256(encodeForSigning(openTx) || sender)) and sets it before the
///     open transaction is broadcast.
///  3. Only 65-byte secp256k1 voucher signatures (r||s||v, v in {27, 28}, low s) are accepted; the
///     real precompile also accepts P-256 and WebAuthn signature envelopes.
///
/// Semantics otherwise follow the spec: channelId = keccak256(abi.encode(payer, payee, operator,
/// token, salt, authorizedSigner, expiringNonceHash, address(this), block.chainid)); vouchers are
/// EIP-712 `Voucher(bytes32 channelId,uint96 cumulativeAmount)` under {name: "TIP20 Channel Reserve",
/// version: "1", chainId, verifyingContract: this}; `deposit == 0` means "no such channel"; `close`
/// and `withdraw` delete the channel state. `ChannelClosed.settledToPayee` is the channel's total
/// settled amount at closing, `refundedToPayer` the rest of the deposit.
contract ChannelReserveStandIn {
    struct ChannelDescriptor {
        address payer;
        address payee;
        address operator;
        address token;
        bytes32 salt;
        address authorizedSigner;
        bytes32 expiringNonceHash;
    }

    struct ChannelState {
        uint96 settled;
        uint96 deposit;
        uint32 closeRequestedAt;
    }

    struct Channel {
        ChannelDescriptor descriptor;
        ChannelState state;
    }

    uint64 public constant CLOSE_GRACE_PERIOD = 15 minutes;

    bytes32 public constant VOUCHER_TYPEHASH = keccak256("Voucher(bytes32 channelId,uint96 cumulativeAmount)");

    bytes32 private constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    bytes32 private constant NAME_HASH = keccak256("TIP20 Channel Reserve");
    bytes32 private constant VERSION_HASH = keccak256("1");

    uint256 private constant MAX_LOW_S = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0;

    /// TIP-20 token addresses start with these 12 bytes; they may not be a payee.
    bytes12 private constant TIP20_PREFIX = 0x20c000000000000000000000;

    mapping(bytes32 => ChannelState) private states;

    /// TEST-ONLY: the expiringNonceHash the next `open` will use (see note 2 above).
    bytes32 private pendingExpiringNonceHash;

    event ChannelOpened(
        bytes32 indexed channelId,
        address indexed payer,
        address indexed payee,
        address operator,
        address token,
        address authorizedSigner,
        bytes32 salt,
        bytes32 expiringNonceHash,
        uint96 deposit
    );
    event Settled(
        bytes32 indexed channelId,
        address indexed payer,
        address indexed payee,
        uint96 cumulativeAmount,
        uint96 deltaPaid,
        uint96 newSettled
    );
    event TopUp(
        bytes32 indexed channelId,
        address indexed payer,
        address indexed payee,
        uint96 additionalDeposit,
        uint96 newDeposit
    );
    event CloseRequested(
        bytes32 indexed channelId, address indexed payer, address indexed payee, uint256 closeGraceEnd
    );
    event ChannelClosed(
        bytes32 indexed channelId,
        address indexed payer,
        address indexed payee,
        uint96 settledToPayee,
        uint96 refundedToPayer
    );
    event CloseRequestCancelled(bytes32 indexed channelId, address indexed payer, address indexed payee);

    error InvalidPayee();
    error ZeroDeposit();
    error ChannelAlreadyExists();
    error ChannelNotFound();
    error AmountExceedsDeposit();
    error AmountNotIncreasing();
    error CaptureAmountInvalid();
    error NotPayer();
    error NotPayeeOrOperator();
    error CloseNotReady();
    error DepositOverflow();
    error InvalidSignature();
    error ExpiringNonceHashNotSet();
    error TransferFailed();

    // ---------------------------------------------------------------- test-only hook

    /// TEST-ONLY. Stores the expiringNonceHash that the next `open` consumes (see note 2 above).
    function setNextExpiringNonceHash(bytes32 expiringNonceHash) external {
        pendingExpiringNonceHash = expiringNonceHash;
    }

    // ---------------------------------------------------------------- payer actions

    function open(
        address payee,
        address operator,
        address token,
        uint96 deposit,
        bytes32 salt,
        address authorizedSigner
    ) external returns (bytes32 channelId) {
        if (payee == address(0) || bytes12(bytes20(payee)) == TIP20_PREFIX) revert InvalidPayee();
        if (deposit == 0) revert ZeroDeposit();
        bytes32 expiringNonceHash = pendingExpiringNonceHash;
        if (expiringNonceHash == bytes32(0)) revert ExpiringNonceHashNotSet();
        delete pendingExpiringNonceHash;

        channelId = computeChannelId(msg.sender, payee, operator, token, salt, authorizedSigner, expiringNonceHash);
        if (states[channelId].deposit != 0) revert ChannelAlreadyExists();
        states[channelId] = ChannelState({settled: 0, deposit: deposit, closeRequestedAt: 0});

        _pull(token, msg.sender, deposit);
        emit ChannelOpened(
            channelId, msg.sender, payee, operator, token, authorizedSigner, salt, expiringNonceHash, deposit
        );
    }

    /// Adds to the deposit (payer only). Also cancels a pending close request.
    function topUp(ChannelDescriptor calldata descriptor, uint96 additionalDeposit) external {
        (bytes32 channelId, ChannelState storage st) = _live(descriptor);
        if (msg.sender != descriptor.payer) revert NotPayer();
        if (additionalDeposit == 0) revert ZeroDeposit();
        uint256 newDeposit = uint256(st.deposit) + additionalDeposit;
        if (newDeposit > type(uint96).max) revert DepositOverflow();

        st.deposit = uint96(newDeposit);
        if (st.closeRequestedAt != 0) {
            st.closeRequestedAt = 0;
            emit CloseRequestCancelled(channelId, descriptor.payer, descriptor.payee);
        }
        _pull(descriptor.token, msg.sender, additionalDeposit);
        emit TopUp(channelId, descriptor.payer, descriptor.payee, additionalDeposit, uint96(newDeposit));
    }

    /// Starts the forced-close grace period (payer only). A no-op while one is pending.
    function requestClose(ChannelDescriptor calldata descriptor) external {
        (bytes32 channelId, ChannelState storage st) = _live(descriptor);
        if (msg.sender != descriptor.payer) revert NotPayer();
        if (st.closeRequestedAt != 0) return;
        st.closeRequestedAt = uint32(block.timestamp);
        emit CloseRequested(channelId, descriptor.payer, descriptor.payee, block.timestamp + CLOSE_GRACE_PERIOD);
    }

    /// After the grace period, refunds `deposit - settled` to the payer and deletes the channel.
    function withdraw(ChannelDescriptor calldata descriptor) external {
        (bytes32 channelId, ChannelState storage st) = _live(descriptor);
        if (msg.sender != descriptor.payer) revert NotPayer();
        if (st.closeRequestedAt == 0 || block.timestamp < uint256(st.closeRequestedAt) + CLOSE_GRACE_PERIOD) {
            revert CloseNotReady();
        }
        uint96 settled = st.settled;
        uint96 refund = st.deposit - settled;
        delete states[channelId];
        if (refund != 0) _push(descriptor.token, descriptor.payer, refund);
        emit ChannelClosed(channelId, descriptor.payer, descriptor.payee, settled, refund);
    }

    // ---------------------------------------------------------------- payee / operator actions

    /// Pays `cumulativeAmount - settled` to the payee against a signed voucher.
    function settle(ChannelDescriptor calldata descriptor, uint96 cumulativeAmount, bytes calldata signature)
        external
    {
        (bytes32 channelId, ChannelState storage st) = _live(descriptor);
        _onlyPayeeOrOperator(descriptor);
        if (cumulativeAmount <= st.settled) revert AmountNotIncreasing();
        if (cumulativeAmount > st.deposit) revert AmountExceedsDeposit();
        _checkVoucher(descriptor, channelId, cumulativeAmount, signature);

        uint96 delta = cumulativeAmount - st.settled;
        st.settled = cumulativeAmount;
        _push(descriptor.token, descriptor.payee, delta);
        emit Settled(channelId, descriptor.payer, descriptor.payee, cumulativeAmount, delta, cumulativeAmount);
    }

    /// Cooperative close: requires settled <= captureAmount <= cumulativeAmount and
    /// captureAmount <= deposit; the voucher signature is only checked when captureAmount > settled.
    /// Pays `captureAmount - settled` to the payee, refunds the rest and deletes the channel.
    function close(
        ChannelDescriptor calldata descriptor,
        uint96 cumulativeAmount,
        uint96 captureAmount,
        bytes calldata signature
    ) external {
        (bytes32 channelId, ChannelState storage st) = _live(descriptor);
        _onlyPayeeOrOperator(descriptor);
        uint96 settled = st.settled;
        uint96 deposit = st.deposit;
        if (captureAmount < settled || captureAmount > cumulativeAmount || captureAmount > deposit) {
            revert CaptureAmountInvalid();
        }
        if (captureAmount > settled) _checkVoucher(descriptor, channelId, cumulativeAmount, signature);

        delete states[channelId];
        if (captureAmount > settled) _push(descriptor.token, descriptor.payee, captureAmount - settled);
        uint96 refund = deposit - captureAmount;
        if (refund != 0) _push(descriptor.token, descriptor.payer, refund);
        emit ChannelClosed(channelId, descriptor.payer, descriptor.payee, captureAmount, refund);
    }

    // ---------------------------------------------------------------- views

    function getChannel(ChannelDescriptor calldata descriptor) external view returns (Channel memory) {
        return Channel({descriptor: descriptor, state: states[_id(descriptor)]});
    }

    function getChannelState(bytes32 channelId) external view returns (ChannelState memory) {
        return states[channelId];
    }

    function getChannelStatesBatch(bytes32[] calldata channelIds) external view returns (ChannelState[] memory out) {
        out = new ChannelState[](channelIds.length);
        for (uint256 i = 0; i < channelIds.length; i++) {
            out[i] = states[channelIds[i]];
        }
    }

    function computeChannelId(
        address payer,
        address payee,
        address operator,
        address token,
        bytes32 salt,
        address authorizedSigner,
        bytes32 expiringNonceHash
    ) public view returns (bytes32) {
        return keccak256(
            abi.encode(
                payer, payee, operator, token, salt, authorizedSigner, expiringNonceHash, address(this), block.chainid
            )
        );
    }

    function domainSeparator() public view returns (bytes32) {
        return keccak256(abi.encode(DOMAIN_TYPEHASH, NAME_HASH, VERSION_HASH, block.chainid, address(this)));
    }

    function getVoucherDigest(bytes32 channelId, uint96 cumulativeAmount) public view returns (bytes32) {
        bytes32 structHash = keccak256(abi.encode(VOUCHER_TYPEHASH, channelId, cumulativeAmount));
        return keccak256(abi.encodePacked("\x19\x01", domainSeparator(), structHash));
    }

    // ---------------------------------------------------------------- internals

    function _id(ChannelDescriptor calldata d) private view returns (bytes32) {
        return computeChannelId(d.payer, d.payee, d.operator, d.token, d.salt, d.authorizedSigner, d.expiringNonceHash);
    }

    function _live(ChannelDescriptor calldata d) private view returns (bytes32 channelId, ChannelState storage st) {
        channelId = _id(d);
        st = states[channelId];
        if (st.deposit == 0) revert ChannelNotFound();
    }

    function _onlyPayeeOrOperator(ChannelDescriptor calldata d) private view {
        if (msg.sender != d.payee && (d.operator == address(0) || msg.sender != d.operator)) {
            revert NotPayeeOrOperator();
        }
    }

    function _checkVoucher(
        ChannelDescriptor calldata d,
        bytes32 channelId,
        uint96 cumulativeAmount,
        bytes calldata signature
    ) private view {
        address signer = d.authorizedSigner == address(0) ? d.payer : d.authorizedSigner;
        if (_recover(getVoucherDigest(channelId, cumulativeAmount), signature) != signer) revert InvalidSignature();
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
