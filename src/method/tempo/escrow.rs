//! The on-chain interfaces the Tempo method speaks: the v1 escrow (the deployed ABI the
//! reference clients use) and the TIP-20 token calls it checks.

#![allow(missing_docs)]
// The escrow's ABI has functions of more than 7 arguments; `sol!` mirrors them.
#![allow(clippy::too_many_arguments)]

alloy::sol! {
    /// The v1 payment-channel escrow ("Tempo Stream Channel"), deployed ABI.
    interface IStreamChannelEscrow {
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

        function open(address payee, address token, uint128 deposit, bytes32 salt, address authorizedSigner) external returns (bytes32 channelId);
        function settle(bytes32 channelId, uint128 cumulativeAmount, bytes signature) external;
        function topUp(bytes32 channelId, uint256 additionalDeposit) external;
        function close(bytes32 channelId, uint128 cumulativeAmount, bytes signature) external;
        function requestClose(bytes32 channelId) external;
        function withdraw(bytes32 channelId) external;
        function getChannel(bytes32 channelId) external view returns (Channel memory);

        event ChannelOpened(bytes32 indexed channelId, address indexed payer, address indexed payee, address token, address authorizedSigner, bytes32 salt, uint256 deposit);
        event Settled(bytes32 indexed channelId, address indexed payer, address indexed payee, uint256 cumulativeAmount, uint256 deltaPaid, uint256 newSettled);
        event TopUp(bytes32 indexed channelId, address indexed payer, address indexed payee, uint256 additionalDeposit, uint256 newDeposit);
        event CloseRequested(bytes32 indexed channelId, address indexed payer, address indexed payee, uint256 closeGraceEnd);
        event ChannelClosed(bytes32 indexed channelId, address indexed payer, address indexed payee, uint256 settledToPayee, uint256 refundedToPayer);
    }

    /// The TIP-1034 channel reserve (v2), at `0x4d50…0000` on Tempo chains.
    interface ITip20ChannelReserve {
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

        function open(address payee, address operator, address token, uint96 deposit, bytes32 salt, address authorizedSigner) external returns (bytes32 channelId);
        function settle(ChannelDescriptor descriptor, uint96 cumulativeAmount, bytes signature) external;
        function topUp(ChannelDescriptor descriptor, uint96 additionalDeposit) external;
        function close(ChannelDescriptor descriptor, uint96 cumulativeAmount, uint96 captureAmount, bytes signature) external;
        function requestClose(ChannelDescriptor descriptor) external;
        function getChannelState(bytes32 channelId) external view returns (ChannelState memory);

        event ChannelOpened(bytes32 indexed channelId, address indexed payer, address indexed payee, address operator, address token, address authorizedSigner, bytes32 salt, bytes32 expiringNonceHash, uint96 deposit);
        event Settled(bytes32 indexed channelId, address indexed payer, address indexed payee, uint96 cumulativeAmount, uint96 deltaPaid, uint96 newSettled);
        event TopUp(bytes32 indexed channelId, address indexed payer, address indexed payee, uint96 additionalDeposit, uint96 newDeposit);
        event ChannelClosed(bytes32 indexed channelId, address indexed payer, address indexed payee, uint96 settledToPayee, uint96 refundedToPayer);
    }

    /// The TIP-20 calls an open or a charge may carry.
    interface ITip20 {
        function approve(address spender, uint256 amount) external returns (bool);
        function transfer(address to, uint256 amount) external returns (bool);
        function transferWithMemo(address to, uint256 amount, bytes32 memo) external;
        function balanceOf(address owner) external view returns (uint256);

        event Transfer(address indexed from, address indexed to, uint256 amount);
        event TransferWithMemo(address indexed from, address indexed to, uint256 amount, bytes32 indexed memo);
    }
}
